#!/usr/bin/env python3
"""make bench: what seekmesh adds on top of the upstream, against nginx and a
peer gateway, measured in one run on one machine (BENCH.md).

Arms, all in front of the same seekmesh-mock:
  A  the mock directly (the floor)
  B  nginx, 1 worker, upstream keep-alive, proxy_buffering off
  C  seekmesh, minimal path
  D  seekmesh, every policy the code has (see POLICY below)
  U  D with CURVE off (mesh.curve false, allowed on loopback): CURVE's price
  L  D without quota leases (every request asks Redis), on request (--arms)
  I  D over ipc:// instead of loopback TCP, on request
  O  D run from another build (--baseline BIN_DIR: the code before a change),
     on request
  Q  D without the audit
  E  seekmesh, cache hit: D's path (keys, Redis quotas, audit) with the
     model's answers kept by seekmesh-cache, asked the same question
  P  Portkey's open-source gateway (@portkey-ai/gateway, tests/bench/portkey)
  F  Q with a sensitive-word list of 10,000 words in force (the word filter
     step only: its streams against Q's)

Load: build/bin/mesh-loadgen (latency at c=1, open-loop rate, SSE streams)
and wrk (max throughput).  Rounds are interleaved across arms.  Output:
tests/bench/results/<date>.md and .json (or --out DIR).  --smoke runs every
step briefly, so `make test` keeps the harness from rotting: it reports
that every step ran, not figures or targets (a smoke run's figures mean
nothing).  Either mode exits 1, after writing its results, when a step's own
work failed: requests at c=1 or streams answered with errors, held streams
that did not complete, audit records lost.  (Errors under wrk's saturating
load are part of what it measures: noted with the figure.)  Portkey's streams are not measured: 1.15.2
answers every streamed request with 500 on Node 20 (see PORTKEY_STREAMS).
--steps (or --only) runs some of the steps only, by name or title (an A/B of
one lever: --arms DL --steps latency,throughput; the word filter's figures
in a minute: --arms AQ --only "word filter").
"""
import argparse
import datetime
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from meshlib import Mesh  # noqa: E402

BIN = Path(os.environ.get("SEEKMESH_BIN") or REPO / "build" / "bin")
KEY = "sk-seekmesh-dev"
CHAT = "/v1/chat/completions"

#  C: the minimal path: a key and models without limits, so the router never
#  asks Redis (none runs), and no audit.  D: every policy the code has: the
#  key's rates, tokens per minute and budget and the model's concurrency,
#  reserved and settled in Redis (one script each way per request), set high
#  enough never to refuse, and an audit record of every request, durable in
#  seekmesh-audit's store.  Q: D without the audit, so D/Q is the audit's
#  price.  E: D with the cache stage and the model's answers kept, so every
#  request after the first is a hit (counted against the key's requests
#  per minute, its tokens given back, recorded by the audit).
UNLIMITED_MODELS = {"max_concurrency": 0}
NO_AUDIT = {"ingress": {"audit_endpoint": ""}}
POLICY_KEYS = [{"id": "dev", "key": "sk-seekmesh-dev", "tenant": "dev", "rpm": 1000000000,
                "tpm": 1000000000000, "budget": 1000000000000000, "budget_period": "month"}]
POLICY = {
    "services": "redis audit router connector ingress",
    "keys": POLICY_KEYS,
    "model": {"max_concurrency": 1000000},
}
POLICY_NO_AUDIT = dict(POLICY, services="redis router connector ingress", config=NO_AUDIT)
#  U: D on a bus without CURVE, so D/U is the encryption's price; L: D with
#  every request's quota decided by a Redis round trip (no leases), so D/L
#  is what the leases save
POLICY_NO_CURVE = dict(POLICY, config={"mesh": {"curve": False}})
POLICY_NO_LEASE = dict(POLICY, config={"router": {"quota": {"lease_slice_ms": 0}}})
#  I: D with its ZeroMQ links over ipc:// (Unix sockets) instead of
#  loopback TCP, as one host allows
POLICY_IPC = dict(POLICY, ipc=True)
#  The arms that run seekmesh, with their overlays and titles
MESH_ARMS = {
    "C": ("seekmesh, minimal path", None),
    "D": ("seekmesh, full path", POLICY),
    "U": ("seekmesh, full path, CURVE off", POLICY_NO_CURVE),
    "L": ("seekmesh, full path without quota leases", POLICY_NO_LEASE),
    "I": ("seekmesh, full path over ipc://", POLICY_IPC),
    "Q": ("seekmesh, full path without audit", POLICY_NO_AUDIT),
}
ARM_ORDER = "ABCDULIOQEP"
MINIMAL = {"services": "router connector ingress", "model": UNLIMITED_MODELS, "config": NO_AUDIT}
CACHED = dict(POLICY, services="redis audit cache router connector ingress",
              model={"max_concurrency": 1000000, "cache": {"ttl_s": 86400}})
#  The coalescing figure: this many identical streams at once, each an
#  answer of 64 deltas 20 ms apart (1.3 s), opened within half a second
HERD = 1000
MESH_ARMS["C"] = (MESH_ARMS["C"][0], MINIMAL)
MESH_ARMS["E"] = ("seekmesh, cache hit (full path)", CACHED)
ACK_HISTOGRAM = "seekmesh_ingress_audit_ack_seconds"

FILTER_WORDS = 10000
BODY = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "hello there"}]}
STREAM_DELAY_MS = 20
STREAM_BODY = dict(BODY, stream=True, mock={"tokens": 64, "delay_ms": STREAM_DELAY_MS})
#  Held streams: one delta every HELD_DELAY_MS; a gap LATE_MS past the
#  upstream's own interval is counted as late, one over 1 s as a stall
HELD_DELAY_MS = 500
LATE_MS = 100


def merge(base, extra):
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


#  Why arm P has no stream figures: its gateway fails every stream here
PORTKEY_STREAMS = ("Portkey's gateway 1.15.2 answers every streamed request with 500 "
                   "\"Something went wrong\" on Node 20 (its log: TypeError: immutable, appending a "
                   "header to the fetch Response it streams), so arm P has no stream figures.")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(samples, p):
    if not samples:
        return None
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def cpu_seconds(pids):
    """utime + stime of pids and their threads, in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / ticks


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path("/proc/%d/status" % pid).read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Arm:
    def __init__(self, name, title, port, path=CHAT, headers=None, pids=None):
        self.name, self.title, self.port, self.path = name, title, port, path
        self.headers = headers or {}
        self._pids = pids or (lambda: {})
        self.mesh = None                #  a seekmesh arm with the audit on: its Mesh
        self.seekmesh = None            #  any seekmesh arm: its Mesh

    @property
    def url(self):
        return "http://127.0.0.1:%d%s" % (self.port, self.path)

    def named_pids(self):
        """{process name: pid} of the arm's processes"""
        pids = self._pids()
        return pids if isinstance(pids, dict) else {str(p): p for p in pids}

    def pids(self):
        return list(self.named_pids().values())


class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="seekmesh-bench-"))
        self.procs = []
        self.meshes = []
        self.results = {"arms": {}, "notes": [], "failures": []}
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    # --- setup --------------------------------------------------------------
    def start_mock(self):
        self.mock_port = free_port()
        admin = free_port()
        config = {"mock": {"listen": "127.0.0.1:%d" % self.mock_port,
                           "admin_listen": "127.0.0.1:%d" % admin, "threads": 1,
                           "keepalive_ms": 1000}}
        path = self.tmp / "mock.json"
        path.write_text(json.dumps(config))
        self.mock_admin = admin
        log = open(self.tmp / "mock.log", "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
        self.mock = subprocess.Popen([str(BIN / "seekmesh-mock"), "-c", str(path)], stderr=log, env=env)
        self.procs.append(self.mock)
        self.wait_port(self.mock_port)

    def wait_port(self, port, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nothing listens on %d" % port)

    def start_nginx(self):
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        port = free_port()
        prefix = self.tmp / "nginx"
        (prefix / "logs").mkdir(parents=True)
        (prefix / "nginx.conf").write_text("""
worker_processes 1;
daemon off;
pid %(prefix)s/nginx.pid;
error_log %(prefix)s/logs/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    upstream mock { server 127.0.0.1:%(mock)d; keepalive 1024; }
    server {
        listen 127.0.0.1:%(port)d;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }
    }
}
""" % {"prefix": prefix, "mock": self.mock_port, "port": port})
        proc = subprocess.Popen([nginx, "-c", str(prefix / "nginx.conf"), "-p", str(prefix)],
                                stdout=subprocess.DEVNULL, stderr=open(prefix / "logs" / "out.log", "w"))
        self.procs.append(proc)
        self.wait_port(port)

        def pids():
            children = Path("/proc/%d/task/%d/children" % (proc.pid, proc.pid)).read_text().split()
            return [proc.pid] + [int(c) for c in children]
        return Arm("B", "nginx (1 worker)", port, pids=pids)

    def start_mesh(self, name, title, overlay):
        #  One connector holds the 10,000 streams of the concurrency test
        #  and one ingress takes them from one address
        config = {"mesh": {"instances": {"mock": 0}}, "connector": {"ws_pool_size": 0, "capacity": 12000},
                  "ingress": {"max_connections_per_address": 0}}
        merge(config, json.loads(json.dumps(overlay.get("config", {}))))
        if "keys" in overlay:
            config["keys"] = overlay["keys"]
        directory = self.tmp / ("mesh-" + name)
        directory.mkdir()
        if overlay.get("ipc"):
            sock = lambda n: "ipc://%s/%s.sock" % (directory, n)
            merge(config, {"router": {"listen": sock("router"), "connector_listen": sock("connectors")},
                           "ingress": {"reply_endpoint": sock("replies"), "audit_endpoint": sock("audit")},
                           "audit": {"listen": sock("audit")}})
        env = {"SEEKMESH_MESH_SERVICES": overlay["services"]}
        if overlay.get("bin"):
            env["SEEKMESH_BIN"] = overlay["bin"]
        mesh = Mesh(directory, config, env=env)
        for model in mesh.config["models"]:
            model["endpoint"] = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:%d" % self.mock_port, model["endpoint"])
            model.update(overlay["model"])
        mesh.config["models"] = [m for m in mesh.config["models"] if not m["endpoint"].startswith("ws")]
        mesh.config_path.write_text(json.dumps(mesh.config))
        self.meshes.append(mesh)        #  before up: teardown stops it however up ends
        mesh.up()

        services = overlay["services"].split()

        def pids():
            #  Redis's CPU is part of what the quota costs, the audit
            #  service's of what the audit costs
            own = {s: mesh.pid("%s-0" % s) for s in ("ingress", "router", "connector", "audit", "cache")
                   if s in services}
            if "redis" in services:
                own["redis"] = mesh.redis_server_pid()
            return own
        arm = Arm(name, title, mesh.port, headers={"Authorization": "Bearer " + KEY}, pids=pids)
        arm.mesh = mesh if "audit" in services else None
        arm.seekmesh = mesh
        return arm

    def start_portkey(self):
        start = HERE / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
        if not start.exists():
            raise RuntimeError("run `npm ci` in tests/bench/portkey (make bench does)")
        port = free_port()
        proc = subprocess.Popen(["node", str(start), "--port=%d" % port, "--headless"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        self.wait_port(port, timeout=30)
        headers = {"Authorization": "Bearer sk-any", "x-portkey-provider": "openai",
                   "x-portkey-custom-host": "http://127.0.0.1:%d/v1" % self.mock_port}
        return Arm("P", "Portkey gateway 1.15.2 (Node %s)" % subprocess.run(
            ["node", "--version"], capture_output=True, text=True).stdout.strip(),
            port, headers=headers, pids=lambda: [proc.pid])

    def setup(self):
        self.start_mock()
        arms = [Arm("A", "mock directly", self.mock_port, pids=lambda: [self.mock.pid])]
        wanted = self.args.arms
        if "B" in wanted:
            arms.append(self.start_nginx())
        if self.args.baseline:
            MESH_ARMS["O"] = ("seekmesh, full path, baseline build", dict(POLICY, bin=self.args.baseline))
        for name in ARM_ORDER:
            if name in wanted and name in MESH_ARMS:
                arms.append(self.start_mesh(name, *MESH_ARMS[name]))
        if "P" in wanted:
            arms.append(self.start_portkey())
        self.arms = arms
        bodies = self.tmp / "bodies"
        bodies.mkdir()
        self.body = bodies / "chat.json"
        self.body.write_text(json.dumps(BODY))
        self.stream_body = bodies / "stream.json"
        self.stream_body.write_text(json.dumps(STREAM_BODY))
        (bodies / "post.lua").write_text(self.wrk_script())

    def wrk_script(self):
        return 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' \
            % json.dumps(json.dumps(BODY))

    def teardown(self):
        #  Everything started is stopped, whatever a mesh's stop says (its
        #  complaint is raised once the rest is down)
        problems = []
        for mesh in self.meshes:
            try:
                mesh.down()
            except AssertionError as e:
                problems.append(str(e))
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            raise AssertionError("\n".join(problems))

    # --- load ---------------------------------------------------------------
    def loadgen(self, arm, mode, *args, body=None, timeout=600):
        command = [str(BIN / "mesh-loadgen"), mode, "--url", arm.url, "--body", str(body or self.body),
                   "--json", *args]
        for name, value in arm.headers.items():
            command += ["--header", "%s: %s" % (name, value)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError("mesh-loadgen %s on %s failed: %s" % (mode, arm.name, result.stderr[-2000:]))
        lines = [l for l in result.stdout.splitlines() if l.startswith("{")]
        return json.loads(lines[-1])

    def wrk(self, arm, seconds, connections):
        script = self.tmp / ("wrk-%s.lua" % arm.name)
        script.write_text(self.wrk_script() + "".join('wrk.headers[%s] = %s\n' % (json.dumps(k), json.dumps(v))
                                                      for k, v in arm.headers.items()))
        pids = arm.named_pids()
        cpu_before = {name: cpu_seconds([pid]) for name, pid in pids.items()}
        result = subprocess.run(["wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "-s", str(script),
                                 arm.url], capture_output=True, text=True, timeout=seconds + 30)
        by_process = {name: cpu_seconds([pid]) - cpu_before[name] for name, pid in pids.items()}
        cpu = sum(by_process.values())
        out = result.stdout
        requests = int(re.search(r"(\d+) requests in", out).group(1))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        errors = non_2xx = 0
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        if m:
            non_2xx = int(m.group(1))
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if m:
            errors += sum(int(x) for x in m.groups())
        errors += non_2xx
        return {"rps": rps, "requests": requests, "errors": errors, "non_2xx": non_2xx,
                "cpu_us_per_request": cpu * 1e6 / requests if requests else None,
                "cpu_us_by_process": {name: round(v * 1e6 / requests, 1) if requests else None
                                      for name, v in by_process.items()}}

    # --- figures ------------------------------------------------------------
    def stage_sums(self, arm):
        """(sum µs, count) of every stage histogram of a seekmesh arm"""
        out = {}
        for service, names in BUDGET_SERIES.items():
            metrics = arm.seekmesh.metrics(service)
            for name in names:
                out[name] = (metrics.get(name.replace("{", "_sum{") if "{" in name else name + "_sum", 0) * 1e6,
                             metrics.get(name.replace("{", "_count{") if "{" in name else name + "_count", 0))
        return out

    def latency(self):
        rounds, per_round = self.args.rounds, self.args.requests
        samples = {arm.name: [] for arm in self.arms}
        errors = {arm.name: 0 for arm in self.arms}
        before = {arm.name: self.stage_sums(arm) for arm in self.arms if arm.seekmesh}
        for _ in range(rounds):
            for arm in self.arms:
                out = self.loadgen(arm, "latency", "--requests", str(per_round), "--warmup", "20")
                samples[arm.name] += out["samples_us"]
                errors[arm.name] += out["errors"]
        for arm in self.arms:
            s = samples[arm.name]
            self.arm(arm)["latency_c1_us"] = {"p50": percentile(s, 50), "p99": percentile(s, 99),
                                              "p999": percentile(s, 99.9), "n": len(s),
                                              "mean": statistics.mean(s) if s else None,
                                              "errors": errors[arm.name]}
            if errors[arm.name]:
                self.fail("Arm %s: %d of %d requests at c=1 failed." % (
                    arm.name, errors[arm.name], rounds * per_round))
            if arm.seekmesh:
                #  The services' own account of the same requests: mean µs
                #  per stage (their histograms' sums over counts)
                after = self.stage_sums(arm)
                self.arm(arm)["budget_c1_us"] = {
                    name: round((after[name][0] - before[arm.name][name][0]) /
                                (after[name][1] - before[arm.name][name][1]), 1)
                    for name in after if after[name][1] > before[arm.name][name][1]}

    def throughput(self):
        runs = {arm.name: [] for arm in self.arms}
        for _ in range(self.args.wrk_rounds):
            for arm in self.arms:
                runs[arm.name].append(self.wrk(arm, self.args.wrk_seconds, 64))
        for arm in self.arms:
            ordered = sorted(runs[arm.name], key=lambda r: r["rps"])
            median = ordered[len(ordered) // 2]
            self.arm(arm)["max_rps"] = median["rps"]
            self.arm(arm)["max_rps_errors"] = sum(r["errors"] for r in runs[arm.name])
            if self.arm(arm)["max_rps_errors"]:
                #  64 connections as fast as they go saturate the machine: a
                #  gateway shedding load (429/503, e.g. a budget it cannot
                #  check while Redis answers slower than its deadline) or a
                #  socket timing out is what this step measures, not a
                #  failure of it; the figure says so
                self.results["notes"].append(
                    "Arm %s under wrk: %d errors (%d non-2xx answers, the rest socket errors)." % (
                        arm.name, self.arm(arm)["max_rps_errors"],
                        sum(r["non_2xx"] for r in runs[arm.name])))
            self.arm(arm)["cpu_us_per_request"] = median["cpu_us_per_request"]
            self.arm(arm)["cpu_us_by_process"] = median["cpu_us_by_process"]

    def frontier(self):
        """Highest open-loop rate with p99 <= 5 ms (binary search)."""
        for arm in self.arms:
            low, high = 0, int(self.arm(arm).get("max_rps") or 20000) * 1.2
            best = None
            for _ in range(self.args.frontier_steps):
                rate = int((low + high) / 2) if best is not None or low else int(high / 2)
                if rate <= 0:
                    break
                out = self.loadgen(arm, "rate", "--rate", str(rate), "--duration", str(self.args.rate_seconds),
                                   "--connections", "64")
                ok = (not out.get("overloaded") and out["errors"] == 0
                      and out["latency_us"]["p99"] <= 5000 and out["achieved_rps"] >= rate * 0.95)
                if ok:
                    best, low = {"rate": rate, "p99_us": out["latency_us"]["p99"]}, rate
                else:
                    high = rate
            self.arm(arm)["rate_at_p99_5ms"] = best

    def streaming(self):
        for arm in self.arms:
            if arm.name == "P":
                self.results["notes"].append(PORTKEY_STREAMS)
                continue
            #  A pass that is not recorded first, as latency has its warm-up:
            #  a gateway's upstream connections are open in steady state
            late = ["--late-ms", str(STREAM_DELAY_MS + LATE_MS)]
            self.loadgen(arm, "stream", "--streams", str(self.args.streams), *late, body=self.stream_body)
            out = self.loadgen(arm, "stream", "--streams", str(self.args.streams), *late, body=self.stream_body)
            self.arm(arm)["stream"] = {"ttft_us": out["ttft_us"], "gap_us": out["gap_us"],
                                       "stalls": out["stalls"], "late": out["late"],
                                       "completed": out["completed"],
                                       "failed": out["failed"], "status_errors": out.get("status_errors")}
            if out["failed"]:
                self.fail("Arm %s: %d of %d streams failed (%s with an error status)." % (
                    arm.name, out["failed"], self.args.streams, out.get("status_errors")))

    def held_streams(self, arm, count):
        """Opens count streams at once; RSS per stream across the arm's processes."""
        pids = arm.pids()
        idle = rss_kib(pids)
        body = self.tmp / "bodies" / "long.json"
        #  Slow deltas: what is measured is streams held, not chunk rate (10k
        #  streams at 20 ms would be 500k chunks/s, more than 2 cores carry)
        body.write_text(json.dumps(dict(BODY, stream=True, mock={"tokens": self.args.held_tokens,
                                                                  "delay_ms": HELD_DELAY_MS})))
        command = [str(BIN / "mesh-loadgen"), "stream", "--url", arm.url, "--body", str(body), "--json",
                   "--streams", str(count), "--hold", "--ramp-per-sec", "1000",
                   "--late-ms", str(HELD_DELAY_MS + LATE_MS)]
        for name, value in arm.headers.items():
            command += ["--header", "%s: %s" % (name, value)]
        named = arm.named_pids()
        cpu_before = {name: cpu_seconds([pid]) for name, pid in named.items()}
        started = time.time()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        held = None
        for line in proc.stdout:
            if line.startswith('{"holding"'):
                held = rss_kib(pids)
                continue
            if line.startswith("{"):
                final = json.loads(line)
        proc.wait(60)
        seconds = time.time() - started
        #  Where the CPU went while the streams ran (share of one core)
        cpu = {name: round((cpu_seconds([pid]) - cpu_before[name]) / seconds, 3) for name, pid in named.items()}
        return {"streams": count, "completed": final["completed"], "failed": final["failed"],
                "stalls": final["stalls"], "late": final["late"], "rss_idle_kib": idle, "rss_held_kib": held,
                "kib_per_stream": round((held - idle) / count, 2) if held else None,
                "gap_p99_us": final["gap_us"]["p99"], "gap_max_us": final["gap_us"]["max"],
                "events": final["events"], "cpu_cores": cpu, "seconds": round(seconds, 1),
                "loadgen_cpu_s": round(final.get("cpu_user_s", 0) + final.get("cpu_sys_s", 0), 2)}

    def concurrency(self):
        arm = next((a for a in self.arms if a.name == "D"), None) or next(a for a in self.arms if a.name == "C")
        self.results["concurrent_streams"] = {"arm": arm.name,
                                              "runs": [self.held_streams(arm, n) for n in self.args.held]}
        for run in self.results["concurrent_streams"]["runs"]:
            if run["completed"] != run["streams"]:
                self.fail("Arm %s: %d of %d held streams completed (%d failed)." % (
                    arm.name, run["completed"], run["streams"], run["failed"]))
        #  and the baseline build's D, when there is one, for the A/B
        for other in (a for a in self.arms if a.name == "O"):
            self.results["concurrent_streams"]["baseline"] = {
                "arm": other.name, "runs": [self.held_streams(other, n) for n in self.args.held]}

    def memory(self):
        arm = next((a for a in self.arms if a.name == "D"), None) or next(a for a in self.arms if a.name == "C")
        pids = arm.pids()
        before = rss_kib(pids)
        proc = subprocess.Popen(["wrk", "-t1", "-c64", "-d%ds" % self.args.steady_seconds, "-s",
                                 str(self.tmp / ("wrk-%s.lua" % arm.name)), arm.url],
                                stdout=subprocess.DEVNULL)
        time.sleep(self.args.steady_seconds / 2)
        during = rss_kib(pids)
        proc.wait()
        time.sleep(self.args.after_seconds)
        after = rss_kib(pids)
        self.results["memory"] = {"arm": arm.name, "rss_before_kib": before, "rss_during_kib": during,
                                  "rss_after_kib": after, "after_seconds": self.args.after_seconds}

    def ack_buckets(self):
        """Each audited arm's end-to-durable-commit histogram: {le: count}."""
        out = {}
        for arm in self.arms:
            if arm.mesh:
                _, text = arm.mesh.admin_get("ingress", "/metrics")
                out[arm.name] = {float(m.group(1)): float(m.group(2)) for m in re.finditer(
                    r'^%s_bucket\{le="([^"]+)"\} (\S+)$' % ACK_HISTOGRAM, text, re.M)}
        return out

    def audit(self):
        """Durable records/s of seekmesh-audit alone: its bench client sends
        records as fast as the socket takes them and waits for the last ACK."""
        directory = self.tmp / "audit-alone"
        directory.mkdir()
        port, admin = free_port(), free_port()
        config = directory / "audit.json"
        #  CURVE on, as in a mesh: a key set made for this run; the bench
        #  client speaks as an ingress from the same config
        keys = directory / "curve"
        subprocess.run([str(BIN / "seekmeshctl"), "curve", "keygen", "--dir", str(keys)],
                       check=True, capture_output=True, timeout=30)
        config.write_text(json.dumps({"mesh": {"curve_dir": str(keys)},
                                      "audit": {"listen": "tcp://127.0.0.1:%d" % port,
                                                "admin_listen": "127.0.0.1:%d" % admin,
                                                "dir": str(directory / "store")}}))
        log = directory / "audit.log"
        proc = subprocess.Popen([str(BIN / "seekmesh-audit"), "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        self.procs.append(proc)
        try:
            self.wait_port(admin)
        except RuntimeError as e:
            raise RuntimeError("%s: seekmesh-audit said: %s" % (e, log.read_text()[-2000:]))
        runs = []
        for size in (512, 2048):
            rates = []
            for _ in range(self.args.audit_rounds):
                result = subprocess.run([str(BIN / "seekmesh-audit"), "bench", "-c", str(config),
                                         "-n", str(self.args.audit_records), "-s", str(size), "-p"],
                                        capture_output=True, text=True, timeout=600)
                m = re.search(r"([\d.]+) durable records/s", result.stdout)
                if result.returncode != 0 or not m:
                    raise RuntimeError("seekmesh-audit bench failed: %s%s" % (result.stdout, result.stderr))
                rates.append(float(m.group(1)))
            runs.append({"prompt_and_response_bytes": 2 * size, "records": self.args.audit_records,
                         "rounds": rates, "records_per_s": sorted(rates)[len(rates) // 2]})
        proc.terminate()
        proc.wait(10)
        self.results.setdefault("audit", {})["throughput"] = runs

    def stored(self):
        """The audited arms' own records: every request served was stored."""
        audit = self.results.setdefault("audit", {})
        for arm in self.arms:
            if arm.mesh:
                arm.mesh.wait_metric("ingress", "seekmesh_ingress_audit_unacked", lambda v: v == 0,
                                     timeout=60)
                v = audit.setdefault("arms", {})[arm.name] = {
                    "ingress_records": arm.mesh.metric("ingress", "seekmesh_ingress_audit_records_total"),
                    "stored": arm.mesh.metric("audit", "seekmesh_audit_records_total"),
                    "unacked": arm.mesh.metric("ingress", "seekmesh_ingress_audit_unacked")}
                if v["stored"] != v["ingress_records"] or v["unacked"]:
                    self.fail("Arm %s: the ingress made %d audit records, the audit stored %d." % (
                        arm.name, v["ingress_records"], v["stored"]))

    def word_filter(self):
        """The word filter's cost a chunk: the matcher and the ingress's chunk
        work alone (mesh-wordfilter-bench), then streams through a mesh with
        FILTER_WORDS words in force (arm F) against the same mesh without
        (arm Q), interleaved: the added TTFT and gap p99, and the ingress's
        CPU a chunk."""
        words = 1000 if self.args.smoke else FILTER_WORDS
        result = subprocess.run([str(BIN / "mesh-wordfilter-bench"), "--json", "--words", str(words),
                                 "--chunks", "5000" if self.args.smoke else "200000"],
                                capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise RuntimeError("mesh-wordfilter-bench failed: " + result.stderr)
        out = self.results["word_filter"] = {"micro": json.loads(result.stdout)}
        base = next((a for a in self.arms if a.name == "Q"), None)
        if not base:
            return
        arm = self.start_mesh("F", "seekmesh, full path without audit, %d words in force" % words,
                              POLICY_NO_AUDIT)
        mesh = self.meshes[-1]
        self.load_words(mesh, words)
        meshes = {"Q": next(m for m in self.meshes if m.port == base.port), "F": mesh}
        samples = {"Q": {"ttft": [], "gap": [], "cpu": 0.0, "chunks": 0},
                   "F": {"ttft": [], "gap": [], "cpu": 0.0, "chunks": 0}}
        for name, a in (("Q", base), ("F", arm)):
            self.loadgen(a, "stream", "--streams", str(self.args.streams), body=self.stream_body)
        for _ in range(self.args.filter_rounds):
            for name, a in (("Q", base), ("F", arm)):
                ingress = meshes[name].pid("ingress-0")
                before = cpu_seconds([ingress])
                r = self.loadgen(a, "stream", "--streams", str(self.args.streams), body=self.stream_body)
                samples[name]["cpu"] += cpu_seconds([ingress]) - before
                samples[name]["chunks"] += r["completed"] * (STREAM_BODY["mock"]["tokens"] + 2)
                samples[name]["ttft"].append(r["ttft_us"]["p99"])
                samples[name]["gap"].append(r["gap_us"]["p99"])
        for name, v in samples.items():
            out[name] = {"ttft_p99_us": statistics.median(v["ttft"]), "gap_p99_us": statistics.median(v["gap"]),
                          "ingress_cpu_us_per_chunk": v["cpu"] * 1e6 / v["chunks"] if v["chunks"] else None,
                          "words": words if name == "F" else 0}
        out["added"] = {"ttft_p99_us": out["F"]["ttft_p99_us"] - out["Q"]["ttft_p99_us"],
                         "gap_p99_us": out["F"]["gap_p99_us"] - out["Q"]["gap_p99_us"],
                         "ingress_cpu_us_per_chunk": (out["F"]["ingress_cpu_us_per_chunk"] or 0)
                                                     - (out["Q"]["ingress_cpu_us_per_chunk"] or 0)}

    def load_words(self, mesh, count):
        """count made-up words (a fifth masks, a third CJK) straight into the
        lists' store (router_filters.h), then the version that announces them;
        waits until the ingress has them"""
        import random
        rng = random.Random(7)
        commands = []
        for i in range(count):
            if rng.random() < 0.7:
                word = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 10)))
            else:
                word = "".join(chr(0x4e00 + rng.randrange(0x51a5)) for _ in range(rng.randint(2, 4)))
            entry = {"id": "f%d" % (i + 1), "tenant": None, "word": word,
                     "action": "mask" if rng.random() < 0.2 else "block", "added_ms": 0}
            commands.append(["HSET", "seekmesh:filters", entry["id"], json.dumps(entry)])
        commands += [["SET", "seekmesh:filters:seq", str(count)], ["SET", "seekmesh:filters:version", "1"],
                     ["PUBLISH", "seekmesh:filters", "1"]]
        resp = b"".join(b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode())
                                                      for a in c) for c in commands)
        subprocess.run(["redis-cli", "-p", str(mesh.redis_port()), "--pipe"], input=resp, check=True,
                       capture_output=True, timeout=60)
        mesh.wait_metric("ingress", "seekmesh_ingress_filter_version", lambda v: v == 1, timeout=30)
    def upstream_calls(self):
        conn = socket.create_connection(("127.0.0.1", self.mock_admin), 5)
        conn.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        text = b""
        while True:
            data = conn.recv(65536)
            if not data:
                break
            text += data
        conn.close()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines()
                   if line.startswith("seekmesh_mock_requests_total"))

    def coalescing(self):
        """Upstream calls for HERD identical streams opened at once, on arm E
        (the cache stage coalesces them) and D (no cache: one call each)."""
        herd = HERD if not self.args.smoke else 50
        out = {}
        for arm in self.arms:
            if arm.name not in ("D", "E"):
                continue
            body = self.tmp / "bodies" / ("herd-%s.json" % arm.name)
            body.write_text(json.dumps(dict(BODY, stream=True, mock={"tokens": 64, "delay_ms": 20},
                                            messages=[{"role": "user", "content": "herd %s %f" % (
                                                arm.name, time.time())}])))
            before = self.upstream_calls()
            run = self.loadgen(arm, "stream", "--streams", str(herd), "--ramp-per-sec", str(herd * 2),
                               body=body)
            out[arm.name] = {"requests": herd, "upstream_calls": self.upstream_calls() - before,
                             "failed": run["failed"], "ttft_p99_us": run["ttft_us"]["p99"]}
        self.results["coalescing"] = out

    def arm(self, arm):
        return self.results["arms"].setdefault(arm.name, {"title": arm.title})

    def fail(self, why):
        """A step whose own work failed: the run goes on, and ends in exit 1."""
        print("bench: FAILED: %s" % why, file=sys.stderr, flush=True)
        self.results["failures"].append(why)

    # --- run ----------------------------------------------------------------
    def run(self):
        started = time.time()
        try:
            self.setup()        #  inside: what a failed setup started is stopped too
            #  The audit's own throughput first, while the disk is quiet
            wanted = set()
            for item in self.args.steps.split(","):
                item = item.strip()
                wanted |= {name for name, title in STEPS.items() if item in (name, title)}
            for name, title in STEPS.items():
                if name not in wanted:
                    continue
                step = getattr(self, name)
                print("bench: %s ..." % title, file=sys.stderr, flush=True)
                self.results.setdefault("steps", []).append(title)
                before = self.ack_buckets()
                step()
                #  End to durable commit during each step, per audited arm
                for name, after in self.ack_buckets().items():
                    delta = {le: after[le] - before.get(name, {}).get(le, 0) for le in after}
                    if delta and max(delta.values()) > 0:
                        self.results.setdefault("audit", {}).setdefault("ack", {}).setdefault(
                            name, {})[title] = {"n": max(delta.values()),
                                                "p50_ms": bucket_quantile(delta, 0.5),
                                                "p99_ms": bucket_quantile(delta, 0.99)}
        finally:
            self.teardown()
        self.results["machine"] = machine()
        self.results["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                                capture_output=True, text=True).stdout.strip()
        self.results["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
        self.results["mode"] = "smoke" if self.args.smoke else "full"
        self.results["seconds"] = round(time.time() - started)
        self.results["ratios"] = ratios(self.results["arms"])
        return self.results


#  The histograms of the c=1 budget: service -> series
BUDGET_SERIES = {
    "ingress": ['seekmesh_ingress_stage_seconds{stage="read"}', 'seekmesh_ingress_stage_seconds{stage="mesh"}',
                'seekmesh_ingress_stage_seconds{stage="write"}', "seekmesh_ingress_request_seconds"],
    "router": ["seekmesh_router_dispatch_seconds"],
    "connector": ['seekmesh_connector_stage_seconds{stage="prepare"}',
                  'seekmesh_connector_stage_seconds{stage="upstream"}',
                  'seekmesh_connector_stage_seconds{stage="reply"}'],
}

#  Bench method -> title, in the order they run: the audit's own throughput
#  first, while the disk is quiet
STEPS = {"audit": "audit throughput", "latency": "latency at c=1", "throughput": "max throughput (wrk)",
         "frontier": "open-loop frontier", "streaming": "streaming", "concurrency": "concurrent streams",
         "coalescing": "coalescing", "memory": "memory", "stored": "audit records stored",
         "word_filter": "word filter"}


def bucket_quantile(buckets, q):
    """A quantile from cumulative histogram buckets {le seconds: count}, in
    ms, interpolated within its bucket as Prometheus' histogram_quantile
    does: only as exact as the buckets (0.5, 1, 2.5, 5, 10 ms ...)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if not total:
        return None
    rank, low, below = q * total, 0.0, 0.0
    for le in bounds:
        if buckets[le] >= rank:
            if le == float("inf"):
                return round(low * 1000, 3)
            share = (rank - below) / (buckets[le] - below) if buckets[le] > below else 1
            return round((low + (le - low) * share) * 1000, 3)
        low, below = le, buckets[le]
    return None


def machine():
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": os.uname().release}


def ratios(arms):
    def get(arm, *path):
        value = arms.get(arm)
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def added(x, a):
        #  A difference of percentiles; at p99.9 of 1,400 samples the floor's
        #  own tail is one or two outliers of this VM, so it can come out
        #  below zero: shown as 0, the raw values stay in the JSON
        return None if x is None or a is None else max(0.0, x - a)

    out = {}
    for arm in ARM_ORDER[1:]:
        if arm in arms:
            arms[arm]["added_us"] = {p: added(get(arm, "latency_c1_us", p), get("A", "latency_c1_us", p))
                                     for p in ("p50", "p99", "p999")}
            arms[arm]["added_stream_us"] = {
                "ttft_p99": added(get(arm, "stream", "ttft_us", "p99"), get("A", "stream", "ttft_us", "p99")),
                "gap_p99": added(get(arm, "stream", "gap_us", "p99"), get("A", "stream", "gap_us", "p99"))}

    def div(a, b):
        return round(a / b, 3) if a is not None and b else None

    for x, y in (("C", "B"), ("D", "B"), ("D", "C"), ("D", "U"), ("D", "L"), ("D", "I"), ("D", "O"),
                 ("D", "Q"), ("E", "C"), ("E", "D"), ("D", "P")):
        if x in arms and y in arms:
            out["%s/%s" % (x, y)] = {
                "added_p99": div(get(x, "added_us", "p99"), get(y, "added_us", "p99")),
                "max_rps": div(get(x, "max_rps"), get(y, "max_rps")),
                "cpu_us_per_request": div(get(x, "cpu_us_per_request"), get(y, "cpu_us_per_request")),
            }
    return out


def targets(r):
    """(figure, measured, target, met?) for every target of round two
    (docs/BENCH.md), on arm D (C where D did not run)."""
    arms = r["arms"]
    full = "D" if "D" in arms else "C"
    rows = []

    def arm_value(name, *path):
        value = arms.get(name)
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    b_rps = arm_value("B", "max_rps")
    for name, share in ((full, 0.5), ("C", 0.75)):
        rps = arm_value(name, "max_rps")
        if rps and b_rps:
            rows.append(("max RPS (%s) vs nginx (B)" % name, "%.2f x (%.0f vs %.0f)" % (rps / b_rps, rps, b_rps),
                         ">= %.2f x" % share, rps / b_rps >= share))
        if name == "C" and full == "C":
            break
    p_rps = arm_value("P", "max_rps")
    d_rps = arm_value(full, "max_rps")
    if d_rps and p_rps:
        rows.append(("max RPS (%s) vs Portkey (P)" % full, "%.1f x" % (d_rps / p_rps), ">= 30 x", d_rps / p_rps >= 30))
    d99 = arm_value(full, "added_us", "p99")
    if d99 is not None:
        rows.append(("added p99 at c=1 (%s)" % full, "%d µs" % d99, "<= 300 µs", d99 <= 300))
    d_cpu = arm_value(full, "cpu_us_per_request")
    if d_cpu:
        rows.append(("CPU-µs per request (%s: all mesh processes + Redis)" % full, "%.0f" % d_cpu, "<= 50",
                     d_cpu <= 50))
    ttft, gap = arm_value(full, "added_stream_us", "ttft_p99"), arm_value(full, "added_stream_us", "gap_p99")
    if ttft is not None:
        rows.append(("added stream TTFT p99 (%s)" % full, "%d µs" % ttft, "<= 300 µs", ttft <= 300))
    if gap is not None:
        rows.append(("added inter-chunk p99 (%s)" % full, "%d µs" % gap, "<= 100 µs", gap <= 100))
    for run in (r.get("concurrent_streams") or {}).get("runs", []):
        if run["streams"] >= 10000:
            ok = (run["completed"] == run["streams"] and run["stalls"] == 0
                  and (run["kib_per_stream"] or 99) <= 20)
            rows.append(("%d concurrent streams (%s)" % (run["streams"], r["concurrent_streams"]["arm"]),
                         "%d completed, %d gaps > 1 s, worst gap %s ms, %s KiB each" % (
                             run["completed"], run["stalls"], fmt((run.get("gap_max_us") or 0) / 1000),
                             run["kib_per_stream"]),
                         "0 gaps > 1 s, <= 20 KiB each", ok))
    for run in (r.get("audit") or {}).get("throughput", [])[:1]:
        rows.append(("audit alone, durable records/s (%d B)" % run["prompt_and_response_bytes"],
                     "%.0f" % run["records_per_s"], ">= 150,000", run["records_per_s"] >= 150000))
    e_rps, d_rps_e = arm_value("E", "max_rps"), arm_value("D", "max_rps")
    e99, c99 = arm_value("E", "added_us", "p99"), arm_value("C", "added_us", "p99")
    if e_rps and d_rps_e:
        rows.append(("cache hit (E): max RPS vs D", "%.2f x (%.0f vs %.0f)" % (e_rps / d_rps_e, e_rps, d_rps_e),
                     ">= 2 x", e_rps >= 2 * d_rps_e))
    if e99 is not None and c99 is not None:
        rows.append(("cache hit (E): added p99 at c=1 vs C's", "%d vs %d µs" % (e99, c99), "<= C's", e99 <= c99))
    m = r.get("memory")
    if m:
        drift = m["rss_after_kib"] - m["rss_during_kib"]
        rows.append(("RSS drift after steady load", "%+d KiB (%d s after)" % (drift, m["after_seconds"]), "~ 0",
                     abs(drift) <= 0.05 * m["rss_during_kib"]))
    return rows


def curve_price(r):
    """What CURVE costs: arm D against arm U (the same, CURVE off), same run."""
    arms = r["arms"]
    if "D" not in arms or "U" not in arms:
        return []
    d, u = arms["D"], arms["U"]

    def row(figure, dv, uv, unit=""):
        if dv is None or uv is None:
            return "| %s | – | – | – |" % figure
        return "| %s | %s%s | %s%s | %+.1f%s |" % (figure, fmt(dv), unit, fmt(uv), unit, dv - uv, unit)
    return ["", "The price of CURVE: arm D (CURVE on every link) against arm U (the same mesh with "
            "`mesh.curve: false`), interleaved in this run:", "",
            "| figure | D (CURVE) | U (no CURVE) | D − U |", "|---|---|---|---|",
            row("p50 at c=1 (µs)", d.get("latency_c1_us", {}).get("p50"), u.get("latency_c1_us", {}).get("p50")),
            row("p99 at c=1 (µs)", d.get("latency_c1_us", {}).get("p99"), u.get("latency_c1_us", {}).get("p99")),
            row("max RPS (wrk -c64)", d.get("max_rps"), u.get("max_rps")),
            row("CPU-µs / request", d.get("cpu_us_per_request"), u.get("cpu_us_per_request")),
            row("stream TTFT p99 (µs)", (d.get("stream") or {}).get("ttft_us", {}).get("p99"),
                (u.get("stream") or {}).get("ttft_us", {}).get("p99")),
            row("inter-chunk p99 (µs)", (d.get("stream") or {}).get("gap_us", {}).get("p99"),
                (u.get("stream") or {}).get("gap_us", {}).get("p99"))]


def budget_table(r):
    """Where a request's time goes at c=1, from the services' own histograms
    (mean µs per request over the latency step)."""
    arms = r["arms"]
    names = [n for n in ARM_ORDER if arms.get(n, {}).get("budget_c1_us")]
    if not names:
        return []

    def get(n, key):
        return arms[n]["budget_c1_us"].get(key)

    def hops(n):
        mesh = get(n, 'seekmesh_ingress_stage_seconds{stage="mesh"}')
        parts = [get(n, "seekmesh_router_dispatch_seconds")] + [
            get(n, 'seekmesh_connector_stage_seconds{stage="%s"}' % s) for s in ("prepare", "upstream", "reply")]
        return None if mesh is None or None in parts else round(mesh - sum(parts), 1)

    def added(n):
        x, a = arms[n].get("latency_c1_us", {}).get("mean"), arms.get("A", {}).get("latency_c1_us", {}).get("mean")
        return None if x is None or a is None else round(x - a, 1)
    rows = [
        ("ingress: head read → REQUEST sent (body, validation, key hash, encode)",
         lambda n: get(n, 'seekmesh_ingress_stage_seconds{stage="read"}')),
        ("router: REQUEST in → DISPATCH sent (key, model, quota, route)",
         lambda n: get(n, "seekmesh_router_dispatch_seconds")),
        ("connector: DISPATCH in → request written upstream",
         lambda n: get(n, 'seekmesh_connector_stage_seconds{stage="prepare"}')),
        ("upstream: written → response read (the mock, over loopback TCP)",
         lambda n: get(n, 'seekmesh_connector_stage_seconds{stage="upstream"}')),
        ("connector: response read → END sent",
         lambda n: get(n, 'seekmesh_connector_stage_seconds{stage="reply"}')),
        ("3 ZeroMQ hops (ingress → router → connector → ingress), with their wake-ups: the rest of "
         "the ingress's mesh stage", hops),
        ("ingress: END in → last byte written", lambda n: get(n, 'seekmesh_ingress_stage_seconds{stage="write"}')),
        ("ingress, head to last byte (its request histogram)", lambda n: get(n, "seekmesh_ingress_request_seconds")),
        ("client's mean added over the mock alone (loadgen, includes the client → ingress TCP and lws' "
         "parsing)", added),
    ]
    lines = ["", "Budget of a request at c=1 (mean µs, from the services' own histograms over the latency step; "
             "the upstream row is the mock's answer seen from the connector):", "",
             "| stage | %s |" % " | ".join(names), "|---|%s" % ("---|" * len(names))]
    for title, fn in rows:
        lines.append("| %s | %s |" % (title, " | ".join(fmt(fn(n)) for n in names)))
    return lines


def fmt(value, unit=""):
    if value is None:
        return "–"
    if isinstance(value, float):
        value = round(value, 1)
    return "%s%s" % (value, unit)


def markdown(r):
    arms = r["arms"]
    lines = ["# seekmesh benchmark, %s (%s)" % (r["date"], r["mode"]), "",
             "Commit `%s`; %s, %d cores, Linux %s; %d s. Everything on loopback, one machine: "
             "the load generators, the arms and the mock share the cores." % (
                 r["commit"], r["machine"]["cpu"], r["machine"]["cores"], r["machine"]["kernel"], r["seconds"]),
             "",
             "| arm | p50 / p99 / p99.9 at c=1 (µs) | added p50 / p99 / p99.9 (µs) | max RPS (wrk -c64) | "
             "rate at p99 ≤ 5 ms | CPU-µs / request | stream TTFT p99 / gap p99 (µs) | added TTFT / gap p99 (µs) |",
             "|---|---|---|---|---|---|---|---|"]
    for name in ARM_ORDER:
        if name not in arms:
            continue
        a = arms[name]
        lat = a.get("latency_c1_us", {})
        add = a.get("added_us", {})
        st = a.get("stream", {})
        ast = a.get("added_stream_us", {})
        frontier = a.get("rate_at_p99_5ms")
        lines.append("| %s %s | %s / %s / %s | %s / %s / %s | %s | %s | %s | %s / %s | %s / %s |" % (
            name, a["title"], fmt(lat.get("p50")), fmt(lat.get("p99")), fmt(lat.get("p999")),
            fmt(add.get("p50")), fmt(add.get("p99")), fmt(add.get("p999")),
            fmt(a.get("max_rps")), fmt(frontier and frontier["rate"]), fmt(a.get("cpu_us_per_request")),
            fmt(st.get("ttft_us", {}).get("p99")), fmt(st.get("gap_us", {}).get("p99")),
            fmt(ast.get("ttft_p99")), fmt(ast.get("gap_p99"))))
    lines += ["", "| ratio | added p99 | max RPS | CPU-µs / request |", "|---|---|---|---|"]
    for key, value in r["ratios"].items():
        lines.append("| %s | %s | %s | %s |" % (key, fmt(value["added_p99"]), fmt(value["max_rps"]),
                                               fmt(value["cpu_us_per_request"])))
    lines += ["", "| figure (round two, BENCH.md) | measured | target | met |", "|---|---|---|---|"]
    for figure, measured, target, met in targets(r):
        lines.append("| %s | %s | %s | %s |" % (figure, measured, target,
                                              "yes" if met else ("no" if met is False else "–")))
    lines += curve_price(r)
    by_process = [(n, arms[n]["cpu_us_by_process"]) for n in ARM_ORDER
                  if n in arms and arms[n].get("cpu_us_by_process") and arms[n].get("title", "").startswith("seekmesh")]
    if by_process:
        names = [p for p in ("ingress", "router", "connector", "audit", "redis")
                 if any(p in v for _, v in by_process)]
        lines += ["", "CPU-µs per request by process, under wrk's full load (the median run):", "",
                  "| arm | %s | total |" % " | ".join(names), "|---|%s---|" % ("---|" * len(names))]
        for name, v in by_process:
            lines.append("| %s | %s | %s |" % (name, " | ".join(fmt(v.get(p)) for p in names),
                                               fmt(arms[name].get("cpu_us_per_request"))))
    lines += budget_table(r)
    streams = [(n, arms[n]["stream"]) for n in ARM_ORDER if n in arms and arms[n].get("stream")]
    if streams:
        lines += ["", "Streams of %d deltas %d ms apart, %s at once: gaps %d ms past the upstream's interval "
                  "(late) and over 1 s (stalls):" % (STREAM_BODY["mock"]["tokens"], STREAM_DELAY_MS,
                                                      streams[0][1].get("completed", 0) + streams[0][1].get("failed", 0),
                                                      LATE_MS), "",
                  "| arm | late | stalls | worst gap (ms) |", "|---|---|---|---|"]
        for name, st in streams:
            lines.append("| %s | %s | %s | %s |" % (name, st.get("late", "–"), st.get("stalls", "–"),
                                                    fmt((st.get("gap_us") or {}).get("max", 0) / 1000)))
    co = r.get("coalescing")
    if co:
        lines += ["", "Coalescing: identical stream requests opened at once (within half a second), each "
                  "answer 64 deltas 20 ms apart; upstream calls counted by the mock:", "",
                  "| arm | requests | upstream calls | failed | TTFT p99 (µs) |", "|---|---|---|---|---|"]
        for name, v in co.items():
            lines.append("| %s | %d | %d | %d | %s |" % (name, v["requests"], v["upstream_calls"], v["failed"],
                                                         fmt(v["ttft_p99_us"])))
    cs = r.get("concurrent_streams")
    if cs:
        lines += ["", "Concurrent SSE streams held on arm %s (one chunk every %d ms each; late: a gap over %d ms):"
                  % (cs["arm"], HELD_DELAY_MS, HELD_DELAY_MS + LATE_MS), "",
                  "| streams | completed | failed | late | stalls (gap > 1 s) | worst gap (ms) | gap p99 (µs) | "
                  "RSS idle → held (KiB) | KiB per stream | CPU (cores) while held |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for run in cs["runs"] + [dict(r, arm="O") for r in (cs.get("baseline") or {}).get("runs", [])]:
            cpu = run.get("cpu_cores") or {}
            lines.append("| %s%d | %d | %d | %s | %d | %s | %s | %s → %s | %s | %s |" % (
                "%s: " % run["arm"] if run.get("arm") else "",
                run["streams"], run["completed"], run["failed"], run.get("late", "–"), run["stalls"],
                fmt((run.get("gap_max_us") or 0) / 1000), fmt(run["gap_p99_us"]),
                run["rss_idle_kib"], run["rss_held_kib"], fmt(run["kib_per_stream"]),
                ", ".join("%s %.2f" % (k, v) for k, v in cpu.items()) + (
                    ", loadgen %.2f" % (run["loadgen_cpu_s"] / run["seconds"]) if run.get("seconds") else "")))
    m = r.get("memory")
    if m:
        lines += ["", "RSS of arm %s's processes (ingress, router, connector and, where they run, audit "
                  "and redis-server): %d KiB idle, %d KiB under "
                  "steady load, %d KiB %d s after." % (m["arm"], m["rss_before_kib"], m["rss_during_kib"],
                                                         m["rss_after_kib"], m["after_seconds"])]
    audit = r.get("audit")
    if audit:
        lines += ["", "Audit: seekmesh-audit alone, its bench client (`seekmesh-audit bench -p`) sending "
                  "records as fast as the socket takes them, timed to the ACK of the last one "
                  "(committed and synced):", "",
                  "| prompt + response bytes | records per round | durable records/s (median) | rounds |",
                  "|---|---|---|---|"]
        for run in audit.get("throughput", []):
            lines.append("| %d | %d | %.0f | %s |" % (run["prompt_and_response_bytes"], run["records"],
                                                      run["records_per_s"],
                                                      ", ".join("%.0f" % x for x in run["rounds"])))
        if audit.get("ack"):
            lines += ["", "Request end to durable commit (the ingress's `%s`; p50/p99 interpolated in "
                      "its buckets 0.5, 1, 2.5, 5, 10 ms ...):" % ACK_HISTOGRAM, "",
                      "| arm | during | records | p50 (ms) | p99 (ms) |", "|---|---|---|---|---|"]
            for name, steps in audit["ack"].items():
                for step, v in steps.items():
                    lines.append("| %s | %s | %d | %s | %s |" % (name, step, v["n"], fmt(v["p50_ms"]),
                                                              fmt(v["p99_ms"])))
        for name, v in audit.get("arms", {}).items():
            lines += ["", "Arm %s: the ingress made %d records, the audit stored %d, %d left "
                      "unacknowledged at the end." % (name, v["ingress_records"], v["stored"], v["unacked"])]
    wf = r.get("word_filter")
    if wf:
        micro = wf["micro"]
        lines += ["", "Word filter, %d words in force (`mesh-wordfilter-bench`: compiled in %s ms, "
                  "longest word %d characters; one chunk timed at a time):" % (
                      micro["words"], fmt(micro["compile_ms"]), micro["longest"]), "",
                  "| per chunk | CPU (ns) | p50 (ns) | p99 (ns) | p99.9 (ns) |", "|---|---|---|---|---|",
                  "| the matcher alone | %s | %s | %s | %s |" % tuple(fmt(micro["matcher"][k]) for k in
                                                                ("cpu_ns", "p50_ns", "p99_ns", "p999_ns")),
                  "| the ingress's chunk work (mesh_wordchunk: scan, match, splice) | %s | %s | %s | %s |" % tuple(
                      fmt(micro["chunk"][k]) for k in ("cpu_ns", "p50_ns", "p99_ns", "p999_ns"))]
        if "F" in wf:
            lines += ["", "Streams (64 deltas 20 ms apart) through arm Q and the same with the list in "
                      "force (F), interleaved:", "",
                      "| | TTFT p99 (µs) | gap p99 (µs) | ingress CPU-µs a chunk |", "|---|---|---|---|"]
            for name in ("Q", "F", "added"):
                v = wf[name]
                lines.append("| %s | %s | %s | %s |" % (name, fmt(v["ttft_p99_us"]), fmt(v["gap_p99_us"]),
                                                        fmt(v["ingress_cpu_us_per_chunk"])))
    for note in r.get("notes", []):
        lines += ["", note]
    for failure in r.get("failures", []):
        lines += ["", "FAILED: " + failure]
    lines += ["", "Reproduce: `make bench` (full) or `make bench-smoke`; raw numbers in the .json beside this file."]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="every step, briefly")
    parser.add_argument("--out", help="directory for the .md and .json (default tests/bench/results)")
    parser.add_argument("--arms", default="ABCDUQEP",
                        help="arms to run, of %s (L: D without quota leases, I: D over ipc://)" % ARM_ORDER)
    parser.add_argument("--baseline", help="a build's bin directory: arm O is D run from it (an A/B of a "
                        "code change in one run: --arms DO --baseline /path/to/old/build/bin)")
    parser.add_argument("--steps", "--only", dest="steps", default=",".join(STEPS),
                        help="steps to run, by name or title, of %s" % ",".join(STEPS))
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.requests, args.wrk_rounds, args.wrk_seconds = 1, 50, 1, 1
        args.frontier_steps, args.rate_seconds, args.streams = 2, 1, 20
        args.held, args.held_tokens, args.steady_seconds, args.after_seconds = [50], 4, 2, 1
        args.audit_records, args.audit_rounds = 2000, 1
        args.filter_rounds = 1
    else:
        args.rounds, args.requests, args.wrk_rounds, args.wrk_seconds = 7, 200, 3, 10
        args.frontier_steps, args.rate_seconds, args.streams = 7, 3, 200
        args.held, args.held_tokens, args.steady_seconds, args.after_seconds = [1000, 10000], 30, 20, 60
        args.audit_records, args.audit_rounds = 300000, 3
        args.filter_rounds = 5
        #  opening 1,000 streams a second, 10,000 are all open after 10 s:
        #  each lasts 30 x 500 ms
    results = Bench(args).run()
    out = Path(args.out) if args.out else HERE / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = results["date"].replace(":", "")
    (out / (stem + ".json")).write_text(json.dumps(results, indent=1))
    (out / (stem + ".md")).write_text(markdown(results))
    if args.smoke:
        #  A smoke run proves the harness works; its figures mean nothing
        print("bench smoke: %d steps ran (%s) on arms %s in %d s; results in %s" % (
            len(results.get("steps", [])), ", ".join(results.get("steps", [])),
            " ".join(sorted(results["arms"])), results["seconds"], out / (stem + ".md")))
    else:
        print(markdown(results))
        print("bench: wrote %s" % (out / (stem + ".md")), file=sys.stderr)
    for failure in results["failures"]:
        print("bench: FAILED: %s" % failure, file=sys.stderr)
    if results["failures"]:
        print("bench%s: %d failures" % (" smoke" if args.smoke else "", len(results["failures"])))
        sys.exit(1)
    if args.smoke:
        print("bench smoke: passed (every step ran, without errors)")


if __name__ == "__main__":
    main()
