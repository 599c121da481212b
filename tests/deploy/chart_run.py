"""Runs the workloads of a rendered chart as the pods would run them, with the
real binaries, inside a network and mount namespace of its own (run it under
`unshare --net --mount --fork`), and reports what it saw as JSON.

The check is what the binaries do with what the chart gives them, not what
the chart says: every Deployment's and StatefulSet's container is started at
once, as Kubernetes starts them, through the image's entry point
(deploy/image/seekmesh, beside links to build/bin) with the container's args
and env ($(VAR) expanded, status.podIP = 127.0.0.1), its ConfigMap and
Secret volumes as files (the ConfigMap's config.json, the Secret's keys as
the items name them), emptyDirs and volume claims as empty directories.
Every Service name resolves to 127.0.0.1 (an /etc/hosts of the namespace),
so the mesh finds itself by the names the chart wrote.  Paths under a
container's mounts are moved to the run directory (in env values, in
config.json, and Redis's directory through SEEKMESH_REDIS_DIR); nothing
else is changed.

Then, for every container: its readiness and liveness probes are asked as
the kubelet would (HTTP GET on the named port, or the exec command), every
declared containerPort must be listening, and /proc/PID/environ shows which
secrets the process holds.  With --chat, a chat and a stream go through the
ingress's Service port.  Last, SIGTERM to everything: each must exit 0
before terminationGracePeriodSeconds less the preStop pause.

    unshare --net --mount --fork python3 chart_run.py RENDERED.yaml RUN_DIR [--chat KEY]"""
import base64
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SECRET_NAMES = ("SEEKMESH_UPSTREAM_API_KEY", "SEEKMESH_ADMIN_TOKEN", "SEEKMESH_CURVE_KEYS", "audit_keys")


def http_get(port, path, headers=None, timeout=2):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        conn.close()


def listening(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def expand(value, env):
    """Kubernetes' $(VAR) expansion of an env value ($$ escapes)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


class Pod:
    def __init__(self, workload, container, run_dir, objects):
        self.workload = workload
        self.kind = workload["kind"]
        self.name = workload["metadata"]["name"]
        self.spec = workload["spec"]["template"]["spec"]
        self.container = container
        self.dir = run_dir / self.name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ports = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
        self.mounts = {}           # container path -> host path
        self._volumes(objects)
        self.proc = None

    def _volumes(self, objects):
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        for claim in self.workload["spec"].get("volumeClaimTemplates", []):
            volumes[claim["metadata"]["name"]] = {"name": claim["metadata"]["name"], "claim": True}
        for mount in self.container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            host = self.dir / "volumes" / mount["name"]
            host.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                data = objects[("ConfigMap", volume["configMap"]["name"])]["data"]
                for key, text in data.items():
                    (host / key).write_text(text)
            else:
                sources = []
                if "secret" in volume:
                    sources.append((volume["secret"]["secretName"], volume["secret"]))
                for source in volume.get("projected", {}).get("sources", []):
                    sources.append((source["secret"]["name"], source["secret"]))
                for name, source in sources:
                    secret = objects.get(("Secret", name))
                    if secret is None and not source.get("optional"):
                        raise AssertionError("%s: Secret %s is not in the chart and not optional"
                                             % (self.name, name))
                    data = (secret or {}).get("data", {})
                    items = source.get("items") or [{"key": k, "path": k} for k in data]
                    for item in items:
                        if item["key"] in data:
                            (host / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))
                        elif secret is not None and not source.get("optional"):
                            raise AssertionError("%s: Secret %s has no %s" % (self.name, name, item["key"]))
            self.mounts[mount["mountPath"].rstrip("/")] = str(host)

    def host_path(self, value):
        """A container path moved to where its mount is here."""
        if not isinstance(value, str):
            return value
        for mount in sorted(self.mounts, key=len, reverse=True):
            if value == mount or value.startswith(mount + "/"):
                return self.mounts[mount] + value[len(mount):]
        return value

    def _moved(self, node):
        if isinstance(node, dict):
            return {k: self._moved(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self._moved(v) for v in node]
        return self.host_path(node)

    def environment(self):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir)}
        for item in self.container.get("env", []):
            if "value" in item:
                value = expand(item["value"], env)
            else:
                field = item["valueFrom"]["fieldRef"]["fieldPath"]
                value = {"status.podIP": "127.0.0.1", "metadata.name": self.name + "-0",
                         "metadata.namespace": "default"}[field]
            env[item["name"]] = self.host_path(value)
        # config.json moves with its mounts: a copy for this container
        config = env.get("SEEKMESH_CONFIG")
        if config:
            moved = self._moved(json.loads(Path(config).read_text()))
            copy = self.dir / "config.json"
            copy.write_text(json.dumps(moved, indent=2))
            env["SEEKMESH_CONFIG"] = str(copy)
        if self.container.get("args", [])[:1] == ["redis"]:
            env["SEEKMESH_REDIS_DIR"] = self.host_path("/var/lib/seekmesh/redis")
        return env

    def start(self, bin_dir):
        args = list(self.container.get("args", []))
        self.env = self.environment()
        self.log = open(self.dir / "log", "w")
        self.proc = subprocess.Popen([str(bin_dir / "seekmesh")] + args, env=self.env, cwd=self.dir,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def probe(self, probe):
        if "httpGet" in probe:
            port = probe["httpGet"]["port"]
            port = self.ports[port] if isinstance(port, str) else port
            try:
                status, body = http_get(port, probe["httpGet"]["path"], timeout=probe.get("timeoutSeconds", 1))
            except OSError as e:
                return False, repr(e)
            return 200 <= status < 400, "%d %s" % (status, body[:200])
        if "exec" in probe:
            command = probe["exec"]["command"]
            # The healthcheck reads PID 1 of its container: here, this pod's pid
            env = dict(self.env, SEEKMESH_HEALTHCHECK_PID=str(self.proc.pid))
            path = [str(BIN)] + env["PATH"].split(":")
            env["PATH"] = ":".join(path)
            r = subprocess.run(command, env=env, capture_output=True, text=True,
                               timeout=probe.get("timeoutSeconds", 1) + 2)
            return r.returncode == 0, (r.stdout + r.stderr).strip()[:200]
        if "tcpSocket" in probe:
            port = probe["tcpSocket"]["port"]
            port = self.ports[port] if isinstance(port, str) else port
            return listening(port), ""
        raise AssertionError("%s: a probe of no known kind: %s" % (self.name, probe))

    def secrets_held(self):
        environ = Path("/proc/%d/environ" % self.proc.pid).read_bytes().split(b"\0")
        names = {e.split(b"=", 1)[0].decode() for e in environ if e}
        held = sorted(n for n in SECRET_NAMES if n in names)
        # audit_keys and cache_keys are files their services name in the config
        for mount, host in self.mounts.items():
            for name in ("audit_keys", "cache_keys"):
                if (Path(host) / name).exists():
                    held.append(name)
        return held


BIN = None


def main():
    global BIN
    rendered, run_dir = Path(sys.argv[1]), Path(sys.argv[2])
    chat_key = sys.argv[sys.argv.index("--chat") + 1] if "--chat" in sys.argv else None
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}

    # The namespace: loopback up, every Service name on it
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    hosts = run_dir / "hosts"
    names = []
    for d in docs:
        if d["kind"] == "Service":
            n, ns = d["metadata"]["name"], d["metadata"].get("namespace", "default")
            names += [n, "%s.%s" % (n, ns), "%s.%s.svc" % (n, ns), "%s.%s.svc.cluster.local" % (n, ns)]
    # one name a line: getaddrinfo gives up on very long hosts lines
    hosts.write_text("".join("127.0.0.1 %s\n" % n for n in ["localhost"] + names))
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)

    # The image's /usr/local/bin: the entry point and healthcheck beside the binaries
    BIN = run_dir / "bin"
    BIN.mkdir(exist_ok=True)
    build = Path(os.environ.get("SEEKMESH_BIN", REPO / "build" / "bin"))
    for b in build.glob("seekmesh*"):
        (BIN / b.name).symlink_to(b)
    for script in ("seekmesh", "seekmesh-healthcheck"):
        (BIN / script).symlink_to(REPO / "deploy" / "image" / script)

    pods = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                pods.append(Pod(d, c, run_dir, objects))
    for pod in pods:
        pod.start(BIN)

    report = {"pods": {}, "chat": None}
    deadline = time.monotonic() + 30
    pending = {p.name for p in pods}
    while pending and time.monotonic() < deadline:
        for pod in pods:
            if pod.name in pending and pod.proc.poll() is None:
                ready, _ = pod.probe(pod.container["readinessProbe"])
                if ready:
                    pending.discard(pod.name)
        time.sleep(0.2)
    for pod in pods:
        r = report["pods"][pod.name] = {"component": pod.workload["metadata"]["labels"].get(
            "app.kubernetes.io/component"), "running": pod.proc.poll() is None}
        r["ready"], r["readiness"] = pod.probe(pod.container["readinessProbe"])
        r["live"], r["liveness"] = pod.probe(pod.container["livenessProbe"])
        r["ports"] = {name: listening(port) for name, port in pod.ports.items()}
        r["secrets"] = pod.secrets_held() if r["running"] else []

    if chat_key:
        service = next(d for d in docs if d["kind"] == "Service"
                       and d["metadata"]["labels"].get("app.kubernetes.io/component") == "ingress"
                       and d["spec"].get("clusterIP") != "None")
        ingress = next(p for p in pods if p.workload["metadata"]["labels"]["app.kubernetes.io/component"] == "ingress")
        port = ingress.ports[service["spec"]["ports"][0]["targetPort"]]
        results = []
        # a chat, a stream, then the same cacheable chat twice: the cache
        # keeps the first answer (miss) and serves the second (hit)
        cache = {"x-seekmesh-cache": "ttl=60"}
        for stream, extra, text in ((False, {}, "hello from the chart"), (True, {}, "hello from the chart"),
                                    (False, cache, "cache me, chart"), (False, cache, "cache me, chart")):
          try:
            body = {"model": "deepseek-chat", "stream": stream,
                    "messages": [{"role": "user", "content": text}]}
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("POST", "/v1/chat/completions", json.dumps(body),
                         dict({"Authorization": "Bearer " + chat_key, "Content-Type": "application/json"}, **extra))
            resp = conn.getresponse()
            results.append({"stream": stream, "status": resp.status, "body": resp.read().decode()[-2000:],
                            "cache": resp.getheader("x-seekmesh-cache")})
            conn.close()
          except OSError as e:
            results.append({"stream": stream, "status": 0, "body": repr(e), "cache": None})
        report["chat"] = results

    # The router's admin API: on with the token from its Secret, off without
    admin = next(p for p in pods if p.workload["metadata"]["labels"]["app.kubernetes.io/component"] == "router")
    token = admin.env.get("SEEKMESH_ADMIN_TOKEN") or ""
    secret_dir = Path(admin.env.get("SEEKMESH_SECRETS_DIR", "/nonexistent"))
    if (secret_dir / "SEEKMESH_ADMIN_TOKEN").exists():
        token = (secret_dir / "SEEKMESH_ADMIN_TOKEN").read_text().strip()
    status, _ = http_get(admin.ports["admin"], "/admin/models",
                         {"Authorization": "Bearer " + token} if token else {})
    report["admin_models_status"] = status

    # SIGTERM, as the kubelet sends it after preStop; each has the grace
    # period less the preStop pause
    start = time.monotonic()
    for pod in pods:
        if pod.proc.poll() is None:
            pod.proc.send_signal(signal.SIGTERM)
    for pod in pods:
        spec = pod.spec
        grace = spec.get("terminationGracePeriodSeconds", 30)
        pre = pod.container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pause = int(pre[1]) if pre[:1] == ["sleep"] else 0
        r = report["pods"][pod.name]
        try:
            code = pod.proc.wait(max(grace - pause - (time.monotonic() - start), 0.1))
            r["exit"], r["stop_seconds"] = code, round(time.monotonic() - start, 2)
        except subprocess.TimeoutExpired:
            os.killpg(pod.proc.pid, signal.SIGKILL)
            pod.proc.wait()
            r["exit"], r["stop_seconds"] = "killed after the grace period", None
        pod.log.close()
        r["log"] = (pod.dir / "log").read_text()[-1500:]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
