"""scripts/mesh: up, status, supervision (kill -9 -> restart), restart, down.

Runs the script against stand-in services generated into tmp_path: small
python programs named seekmesh-<service> that answer GET /healthz on their
admin port (admin_listen + SEEKMESH_INSTANCE x port_stride, environment
overrides first) and exit on SIGTERM.  They need nothing from build/, so
these tests run before the real services exist.

Run: /usr/bin/python3 -m pytest tests/integration/test_mesh_script.py
"""
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MESH = REPO / "scripts" / "mesh"
STRIDE = 7

STANDIN = r'''#!/usr/bin/python3
import json, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

service = os.path.basename(sys.argv[0])[len("seekmesh-"):]
config_path = sys.argv[sys.argv.index("-c") + 1]
assert os.environ["SEEKMESH_CONFIG"] == config_path, "SEEKMESH_CONFIG differs from -c"
with open(config_path) as f:
    config = json.load(f)
instance = int(os.environ["SEEKMESH_INSTANCE"])
admin = (os.environ.get("SEEKMESH_%s_ADMIN_LISTEN" % service.upper())
         or config[service]["admin_listen"])
stride = int(os.environ.get("SEEKMESH_MESH_PORT_STRIDE") or config["mesh"]["port_stride"])
host, port = admin.rsplit(":", 1)
port = int(port) + instance * stride

if "--print-config" in sys.argv:
    # What a real service prints, as far as scripts/mesh reads it
    if os.environ.get("STANDIN_CONFIG_" + service.upper()) == "bad":
        print("2026-01-01T00:00:00.000Z %s[1] F mesh_service_config: config %s: %s.admin_listen: "
              "stand-in refuses" % (service, config_path, service), file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"mesh": {"drain_ms": int(os.environ.get("SEEKMESH_MESH_DRAIN_MS")
                                                or config["mesh"].get("drain_ms", 5000)),
                               "instances": {s: int(os.environ.get("SEEKMESH_MESH_INSTANCES_" + s.upper(), n))
                                             for s, n in config["mesh"]["instances"].items()}},
                      service: {"admin_listen": "%s:%d" % (host, port)}}))
    sys.exit(0)

mode = os.environ.get("STANDIN_" + service.upper(), "") or config[service].get("standin_mode", "")
if mode == "crash":
    print("%s: cannot start (stand-in crash mode)" % service, file=sys.stderr)
    sys.exit(2)
if mode == "config":
    # what a real service does with a bad value: one fatal line, EX_CONFIG
    print("2026-01-01T00:00:00.000Z %s[%d] F main: config %s: %s.threads: expected an integer, "
          "got a string" % (service, os.getpid(), config_path, service), file=sys.stderr)
    sys.exit(78)

def on_term(*_):
    print("%s-%d: SIGTERM" % (service, instance), file=sys.stderr, flush=True)
    if mode != "stubborn":
        os._exit(0)
signal.signal(signal.SIGTERM, on_term)

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path in ("/healthz", "/readyz") else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *_):
        pass

server = HTTPServer((host, port), Handler)
print("%s-%d: pid %d serving %s:%d" % (service, instance, os.getpid(), host, port),
      file=sys.stderr, flush=True)
server.serve_forever()
'''


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_bases(count, instances):
    """Admin ports p with p + k*STRIDE free for k < instances, all distinct."""
    taken, bases = set(), []
    while len(bases) < count:
        base = random.randrange(20000, 32000)     # below the ephemeral ports
        ports = {base + k * STRIDE for k in range(instances)}
        if ports & taken or not all(_port_free(p) for p in ports):
            continue
        taken |= ports
        bases.append(base)
    return bases


class Mesh:
    def __init__(self, tmp_path):
        self.dir = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for service in ("mock", "router", "connector", "ingress"):
            path = self.bin / ("seekmesh-" + service)
            path.write_text(STANDIN)
            path.chmod(0o755)
        self.run_dir = tmp_path / "run"
        mock, router, connector, ingress, router_env = _free_bases(5, 2)
        self.bases = dict(mock=mock, router=router, connector=connector, ingress=ingress)
        self.config = tmp_path / "mesh.json"
        self.write_config(drain_ms=1000)
        self.ports = {"mock-0": mock, "connector-0": connector, "ingress-0": ingress,
                      "router-0": router_env, "router-1": router_env + STRIDE}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
        self.env.update(SEEKMESH_BIN=str(self.bin), SEEKMESH_RUN_DIR=str(self.run_dir),
                        SEEKMESH_CONFIG=str(self.config),
                        # the override must win over the file's router port
                        SEEKMESH_ROUTER_ADMIN_LISTEN="127.0.0.1:%d" % router_env)

    def write_config(self, drain_ms, modes=None):
        config = {
            "mesh": {"port_stride": STRIDE, "drain_ms": drain_ms,
                     "instances": {"redis": 0, "audit": 0, "cache": 0, "mock": 1, "router": 2, "connector": 1, "ingress": 1}},
        }
        for service, port in self.bases.items():
            config[service] = {"admin_listen": "127.0.0.1:%d" % port}
            if (modes or {}).get(service):
                config[service]["standin_mode"] = modes[service]
        self.config.write_text(json.dumps(config))

    def run(self, *args, env=None, timeout=30):
        full_env = dict(self.env, **(env or {}))
        return subprocess.run([str(MESH), *args], env=full_env, capture_output=True,
                              text=True, timeout=timeout)

    def pid(self, name):
        result = self.run("pid", name)
        return int(result.stdout) if result.returncode == 0 else None

    def status(self):
        result = self.run("status")
        rows = {}
        for line in result.stdout.splitlines():
            name, pid, state, *extra = line.split()
            rows[name] = dict(pid=pid, state=state,
                              restarts=int(dict(e.split("=") for e in extra)["restarts"]))
        return result.returncode, rows

    def healthy(self, name):
        try:
            with socket.create_connection(("127.0.0.1", self.ports[name]), timeout=1) as s:
                s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.0 200")
        except OSError:
            return False

    def leftovers(self):
        """Live (not zombie) processes carrying this run dir's marker."""
        marker = b"SEEKMESH_MESH_RUN_DIR=" + str(self.run_dir).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state not in ("Z", "X"):
                found.append(int(entry.name))
        return found


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def mesh(tmp_path):
    m = Mesh(tmp_path)
    yield m
    m.run("down")
    for pid in m.leftovers():        # never leave processes behind a failed test
        os.kill(pid, signal.SIGKILL)


def test_up_kill_restart_down(mesh):
    started = time.monotonic()
    up = mesh.run("up")
    assert up.returncode == 0, up.stderr
    assert time.monotonic() - started < 10
    code, rows = mesh.status()
    assert code == 0
    assert list(rows) == ["mock-0", "router-0", "router-1", "connector-0", "ingress-0"]
    assert all(r["state"] == "running" and r["restarts"] == 0 for r in rows.values())
    assert all(mesh.healthy(name) for name in rows)

    again = mesh.run("up")
    assert again.returncode == 1
    assert "already up" in again.stderr

    # kill -9: restarted after the first backoff (100 ms), counted as a restart
    old = mesh.pid("connector-0")
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (p := mesh.pid("connector-0")) and p != old and p, 5)
    assert new and new != old
    log = (mesh.run_dir / "logs" / "supervisor.log").read_text()
    assert "restart connector-0 in 100 ms" in log, log
    assert wait_for(lambda: mesh.healthy("connector-0"), 2)
    code, rows = mesh.status()
    assert code == 0
    assert rows["connector-0"]["restarts"] == 1
    assert rows["router-0"]["restarts"] == 0 and rows["ingress-0"]["restarts"] == 0
    log = (mesh.run_dir / "logs" / "supervisor.log").read_text()
    assert re.search(r"exit connector-0 pid=%d killed by SIGKILL" % old, log)

    # restart a service: every instance gets a new pid and is healthy
    before = {n: mesh.pid(n) for n in ("router-0", "router-1")}
    restart = mesh.run("restart", "router")
    assert restart.returncode == 0, restart.stderr
    for name, pid in before.items():
        assert mesh.pid(name) not in (None, pid)
        assert mesh.healthy(name)
    code, rows = mesh.status()
    assert code == 0 and rows["router-0"]["restarts"] == 0

    logs = mesh.run("logs", "router-1")
    assert logs.returncode == 0 and "router-1: SIGTERM" in logs.stdout

    down = mesh.run("down")
    assert down.returncode == 0, down.stderr
    assert mesh.leftovers() == []
    code, rows = mesh.status()
    assert code == 3
    assert all(r["state"] == "stopped" and r["pid"] == "-" for r in rows.values())
    assert not (mesh.run_dir / "supervisor.pid").exists()

    assert mesh.run("down").returncode == 0


def test_down_when_nothing_runs(mesh):
    down = mesh.run("down")
    assert down.returncode == 0, down.stderr


def test_supervisor_killed_then_down_stops_children(mesh):
    assert mesh.run("up").returncode == 0
    supervisor = int((mesh.run_dir / "supervisor.pid").read_text())
    os.kill(supervisor, signal.SIGKILL)
    assert len(mesh.leftovers()) == 5
    code, _ = mesh.status()
    assert code == 3                 # processes run, but nobody supervises them
    assert mesh.run("down").returncode == 0
    assert mesh.leftovers() == []
    # and the stale supervisor.pid does not block the next up
    assert mesh.run("up").returncode == 0


def test_down_kills_a_process_that_ignores_sigterm(mesh):
    mesh.write_config(drain_ms=300)
    assert mesh.run("up", env={"STANDIN_ROUTER": "stubborn"}).returncode == 0
    started = time.monotonic()
    down = mesh.run("down")
    assert down.returncode == 0
    assert time.monotonic() - started < 0.3 + 1 + 1
    assert mesh.leftovers() == []
    log = (mesh.run_dir / "logs" / "supervisor.log").read_text()
    assert "router-0 pid=" in log and "SIGKILL" in log


def test_up_reports_what_is_unhealthy(mesh):
    up = mesh.run("up", env={"STANDIN_CONNECTOR": "crash",
                             "SEEKMESH_MESH_UP_TIMEOUT_MS": "1500"})
    assert up.returncode == 1
    assert "connector-0 not healthy" in up.stderr
    assert "cannot start (stand-in crash mode)" in up.stderr     # its log's tail
    # backing off: restarted again and again, and down between the tries
    # (a status taken while a try is starting sees it alive: poll)
    deadline = time.monotonic() + 10
    while True:
        code, rows = mesh.status()
        if code == 3 and rows["connector-0"]["restarts"] >= 2:
            break
        assert time.monotonic() < deadline, (code, rows)
        time.sleep(0.05)


def test_up_fails_fast_on_a_configuration_error(mesh):
    """A service that exits with a configuration error (status 78) is not
    restarted into the same error: `up` says its line once, at once, and
    leaves nothing running."""
    mesh.write_config(drain_ms=1000, modes={"connector": "config"})
    started = time.monotonic()
    up = mesh.run("up", env={"SEEKMESH_MESH_UP_TIMEOUT_MS": "60000"}, timeout=90)
    took = time.monotonic() - started
    assert up.returncode == 1, up.stderr
    assert took < 30, took                              # not the 60 s health timeout
    assert up.stderr.count("connector.threads: expected an integer") == 1, up.stderr
    assert "configuration error (connector-0): config " in up.stderr
    assert mesh.leftovers() == []
    log = (mesh.run_dir / "logs" / "connector-0.log").read_text()
    assert log.count("F main: config") == 1, log


def test_a_configuration_error_waits_for_the_config_to_change(mesh):
    up = mesh.run("up")
    assert up.returncode == 0, up.stderr
    # the file goes bad; the router is started again (a restart, a crash)
    mesh.write_config(drain_ms=1000, modes={"router": "config"})
    restart = mesh.run("restart", "router-0")
    assert restart.returncode == 1
    assert restart.stderr.count("router.threads: expected an integer") == 1, restart.stderr
    code, rows = mesh.status()
    assert code == 3 and rows["router-0"]["state"] == "config-error", rows
    # held, not crash-looping: one start, one exit in 2 s
    time.sleep(2)
    log = (mesh.run_dir / "logs" / "router-0.log").read_text()
    assert log.count("F main: config") == 1, log
    assert mesh.status()[1]["router-0"]["state"] == "config-error"
    assert rows["router-1"]["state"] == "running"       # the rest keeps running
    # fixed: started again by itself
    mesh.write_config(drain_ms=1000)
    assert wait_for(lambda: mesh.status()[1]["router-0"]["state"] == "running", 5)
    assert wait_for(lambda: mesh.healthy("router-0"), 5)
    supervisor = (mesh.run_dir / "logs" / "supervisor.log").read_text()
    assert "router-0 has a configuration error" in supervisor
    assert "changed: starting router-0 again" in supervisor


def test_missing_binary_says_make(mesh):
    (mesh.bin / "seekmesh-ingress").unlink()
    up = mesh.run("up")
    assert up.returncode == 1
    assert "seekmesh-ingress" in up.stderr and "make" in up.stderr
    assert mesh.leftovers() == []


def test_services_override_and_instance_count(mesh):
    env = {"SEEKMESH_MESH_SERVICES": "router ingress", "SEEKMESH_MESH_INSTANCES_ROUTER": "1"}
    up = mesh.run("up", env=env)
    assert up.returncode == 0, up.stderr
    code, rows = mesh.status()
    assert code == 0 and list(rows) == ["router-0", "ingress-0"]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
