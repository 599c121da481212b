"""Cannot start: one clear line naming the file and the field (or the port),
exit status 1, for every service."""
import json
import socket
import subprocess

from meshlib import BIN

SERVICES = ("ingress", "router", "connector", "mock")


def run(service, config_path, env=None):
    result = subprocess.run([str(BIN / ("seekmesh-" + service)), "-c", str(config_path)],
                            capture_output=True, text=True, timeout=10, env=env)
    return result.returncode, result.stderr.strip().splitlines()


def test_wrong_type_names_file_and_field(tmp_path):
    for service, field in [("ingress", "max_body_bytes"), ("router", "heartbeat_ms"),
                           ("connector", "capacity"), ("mock", "threads")]:
        path = tmp_path / ("%s.json" % service)
        path.write_text(json.dumps({service: {field: "lots"}}))
        status, lines = run(service, path)
        assert status == 1, lines
        assert len(lines) == 1, lines
        assert str(path) in lines[0] and "%s.%s" % (service, field) in lines[0], lines[0]
        assert "expected an integer" in lines[0]


def test_malformed_json_names_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "router": {\n    "listen": \n}\n')
    for service in SERVICES:
        status, lines = run(service, path)
        assert status == 1 and len(lines) == 1, lines
        assert "%s:4:" % path in lines[0], lines[0]


def test_missing_file(tmp_path):
    status, lines = run("router", tmp_path / "nowhere.json")
    assert status == 1 and "nowhere.json" in lines[0]


def test_bad_model_entry(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [{"name": "m", "endpoint": "ftp://x/"}]}))
    for service in ("router", "connector"):
        status, lines = run(service, path)
        assert status == 1 and "models.0.endpoint" in lines[0] and "scheme" in lines[0], lines


def test_environment_override_is_named(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text("{}")
    env = {"SEEKMESH_ROUTER_HEARTBEAT_MS": "soon", "PATH": "/usr/bin:/bin"}
    status, lines = run("router", path, env)
    assert status == 1 and "SEEKMESH_ROUTER_HEARTBEAT_MS" in lines[0], lines


def test_port_in_use(tmp_path):
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    path = tmp_path / "busy.json"
    free = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free.append(s.getsockname()[1])
    path.write_text(json.dumps({"router": {"admin_listen": "127.0.0.1:%d" % port,
                                           "listen": "tcp://127.0.0.1:%d" % free[0],
                                           "connector_listen": "tcp://127.0.0.1:%d" % free[1]}}))
    status, lines = run("router", path)
    holder.close()
    assert status == 1
    assert str(port) in lines[-1] and "in use" in lines[-1].lower(), lines
