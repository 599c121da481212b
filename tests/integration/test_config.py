"""Cannot start: one clear line naming the file and the field (or the port),
for every service; exit status 78 (EX_CONFIG) for a configuration error, so
that scripts/mesh waits for the file to change instead of restarting it, and
1 for anything else (a port in use)."""
import json
import os
import re
import socket
import subprocess

from meshlib import BIN

SERVICES = ("ingress", "router", "connector", "mock")


def run(service, config_path, env=None):
    # Alone, on loopback: CURVE off (no key set here), which loopback allows
    env = dict(env if env is not None else os.environ, SEEKMESH_MESH_CURVE="false")
    result = subprocess.run([str(BIN / ("seekmesh-" + service)), "-c", str(config_path)],
                            capture_output=True, text=True, timeout=10, env=env)
    return result.returncode, result.stderr.strip().splitlines()


def test_wrong_type_names_file_and_field(tmp_path):
    for service, field in [("ingress", "max_body_bytes"), ("router", "heartbeat_ms"),
                           ("connector", "capacity"), ("mock", "threads")]:
        path = tmp_path / ("%s.json" % service)
        path.write_text(json.dumps({service: {field: "lots"}}))
        status, lines = run(service, path)
        assert status == 78, lines
        assert len(lines) == 1, lines
        assert str(path) in lines[0] and "%s.%s" % (service, field) in lines[0], lines[0]
        assert "expected an integer" in lines[0]


def test_malformed_json_names_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "router": {\n    "listen": \n}\n')
    for service in SERVICES:
        status, lines = run(service, path)
        assert status == 78 and len(lines) == 1, lines
        assert "%s:4:" % path in lines[0], lines[0]


def test_missing_file(tmp_path):
    status, lines = run("router", tmp_path / "nowhere.json")
    assert status == 78 and "nowhere.json" in lines[0]


def test_bad_model_entry(tmp_path):
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": [{"name": "m", "endpoint": "ftp://x/"}]}))
    for service in ("router", "connector"):
        status, lines = run(service, path)
        assert status == 78 and "models.0.endpoint" in lines[0] and "scheme" in lines[0], lines


def test_environment_override_is_named(tmp_path):
    path = tmp_path / "ok.json"
    path.write_text("{}")
    env = {"SEEKMESH_ROUTER_HEARTBEAT_MS": "soon", "PATH": "/usr/bin:/bin"}
    status, lines = run("router", path, env)
    assert status == 78 and "SEEKMESH_ROUTER_HEARTBEAT_MS" in lines[0], lines


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


def test_unknown_keys_are_named(tmp_path):
    # Settings: every service refuses them; models and keys: those that read them
    every = ("router", "ingress", "connector", "mock")
    cases = [({"ingress": {"max_body_byte": 1}}, "ingress.max_body_byte", every),
             ({"routr": {}}, "routr", every),
             ({"mesh": {"instances": {"routers": 2}}}, "mesh.instances.routers", every),
             ({"models": [{"name": "m", "endpoint": "http://127.0.0.1:1/v1/chat/completions",
                           "auth": {"type": "none"}, "max_concurency": 3}]}, "models.0.max_concurency",
              ("router", "connector")),
             ({"keys": [{"key": "sk-12345678", "rmp": 5}]}, "keys.0.rmp", ("router",))]
    for i, (config, field, services) in enumerate(cases):
        path = tmp_path / ("unknown%d.json" % i)
        path.write_text(json.dumps(config))
        for service in services:
            status, lines = run(service, path)
            assert status == 78 and len(lines) == 1, (service, lines)
            assert str(path) in lines[0] and field in lines[0] and "unknown" in lines[0], lines[0]


def test_out_of_range_and_choices_are_named(tmp_path):
    for config, words in [({"router": {"heartbeat_ms": 0}}, "between 10 and 60000"),
                          ({"ingress": {"audit_when_full": "panic"}}, "refuse|drop"),
                          ({"router": {"admin_listen": "localhost"}}, "host:port")]:
        path = tmp_path / "range.json"
        path.write_text(json.dumps(config))
        status, lines = run("connector", path)
        assert status == 78 and len(lines) == 1 and words in lines[0], lines


def print_config(service, path, env):
    result = subprocess.run([str(BIN / ("seekmesh-" + service)), "--print-config", "-c", str(path)],
                            capture_output=True, text=True, timeout=10, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_print_config_is_what_the_instance_runs_with(tmp_path):
    path = tmp_path / "mesh.json"
    path.write_text(json.dumps({"mesh": {"port_stride": 7, "instances": {"router": 3}},
                                "router": {"admin_listen": "127.0.0.1:9081"},
                                "keys": [{"id": "k1", "key": "sk-very-secret", "tenant": "t"}]}))
    env = {"PATH": "/usr/bin:/bin", "SEEKMESH_INSTANCE": "2", "SEEKMESH_INGRESS_LISTEN": "0.0.0.0:8088"}
    for service in ("ingress", "router", "connector", "audit", "mock"):
        config = print_config(service, path, env)
        assert config["mesh"]["instance"] == 2
        assert config["router"]["admin_listen"] == "127.0.0.1:9095"          # + 2 x 7
        assert config["router"]["listen"] == "tcp://127.0.0.1:5569"
        assert config["ingress"]["listen"] == "0.0.0.0:8088"                 # shared, not moved
        assert config["ingress"]["routers"] == ["tcp://127.0.0.1:%d" % p for p in (5555, 5562, 5569)]
        assert config["connector"]["routers"][2] == "tcp://127.0.0.1:5570"
        assert config["router"]["heartbeat_ms"] == 500                        # the default
        assert config["keys"][0]["id"] == "k1" and "sk-very-secret" not in json.dumps(config)


def test_settings_lists_every_setting_with_its_environment_name():
    result = subprocess.run([str(BIN / "seekmesh-router"), "--settings"], capture_output=True,
                            text=True, timeout=10)
    assert result.returncode == 0
    table = {row["name"]: row for row in json.loads(result.stdout)}
    assert table["ingress.max_body_bytes"]["env"] == "SEEKMESH_INGRESS_MAX_BODY_BYTES"
    assert table["ingress.max_body_bytes"]["default"] == "1048576"
    assert table["router.heartbeat_ms"]["min"] == 10
    # Every setting in the shipped configs is one the services know
    for name in ("local.json", "deepseek.json"):
        config = json.loads((BIN.parents[1] / "compose" / "config" / name).read_text())
        def walk(prefix, node):
            for key, value in node.items():
                path = prefix + key
                if isinstance(value, dict) and path not in table:
                    walk(path + ".", value)
                else:
                    assert path in table, (name, path)
        walk("", {k: v for k, v in config.items() if k not in ("models", "keys", "aliases")})


def test_a_bad_value_under_scripts_mesh_is_said_once_and_not_restarted(tmp_path):
    """The real services under scripts/mesh: `up` with a bad value fails at
    once with its line, once, starting nothing; a service started again
    into a bad file (a restart, a crash) exits 78 and is held until the file
    changes, instead of being restarted every few seconds into the same
    error; fixed, it comes back by itself."""
    import time
    from meshlib import Mesh
    mesh = Mesh(tmp_path, {"mesh": {"drain_ms": 1000}})
    good = mesh.config_path.read_text()
    bad = json.loads(good)
    bad["router"]["heartbeat_ms"] = "lots"
    try:
        mesh.config_path.write_text(json.dumps(bad))
        started = time.time()
        result = mesh.mesh("up", "-c", str(mesh.config_path), check=False)
        assert result.returncode == 1 and time.time() - started < 8, result.stderr
        assert result.stderr.count("router.heartbeat_ms: expected an integer") == 1, result.stderr
        assert str(mesh.config_path) in result.stderr
        assert not (mesh.run_dir / "supervisor.pid").exists()         # nothing was started

        mesh.config_path.write_text(good)
        mesh.up()
        mesh.config_path.write_text(json.dumps(bad))
        result = mesh.mesh("restart", "router", check=False)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("router.heartbeat_ms: expected an integer") == 1, result.stderr
        assert "configuration error (router-0)" in result.stderr, result.stderr
        time.sleep(2)
        status = mesh.mesh("status", check=False).stdout
        assert re.search(r"^router-0\s+-\s+config-error", status, re.M), status
        log = (mesh.run_dir / "logs" / "router-0.log").read_text()
        assert log.count("router.heartbeat_ms: expected an integer") == 1, log
        mesh.config_path.write_text(good)
        mesh.wait_ready("router", timeout=5)
        assert "changed: starting router-0 again" in mesh.logs("supervisor")
    finally:
        mesh.mesh("down", check=False)
