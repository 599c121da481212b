"""compose/docker-compose.yml and the containers' configs, read without
containers (make compose-test runs them for real): every service locked
down the same way, secrets only where they are read and named as the config
reads them, the configs naming only settings the binaries read."""
import json
import re
import subprocess
from pathlib import Path

import yaml

from test_helm_chart import SECTIONS, leaves, read_paths

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose"
BIN = REPO / "build" / "bin"
#  The roles of the bus (mesh_curve's allow-list): each has its own CURVE secret
ROLES = ("ingress", "router", "connector", "cache", "audit")


def compose():
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def test_every_service_is_locked_down_and_bounded():
    services = compose()["services"]
    assert set(services) == {"redis", "audit", "cache", "router", "connector", "ingress", "mock"}
    for name, s in services.items():
        assert s["read_only"] is True and "/tmp" in s["tmpfs"], name
        assert s["restart"] == "unless-stopped", name
        assert s["healthcheck"]["test"] == ["CMD", "/usr/local/bin/seekmesh-healthcheck"], name
        assert s["ulimits"]["nofile"] == {"soft": 16384, "hard": 16384}, name
        assert s["logging"]["options"]["max-size"] and s["logging"]["options"]["max-file"], name
        limits = s["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) == s["cpus"], name
        assert limits["memory"].lower().rstrip("b") == s["mem_limit"].lower().rstrip("b"), name
        assert s["command"][0] == name, "the service is chosen by the command"
        assert "user" not in s, "the image's unprivileged user"
    assert services["mock"]["profiles"] == ["demo"]
    assert all("profiles" not in s for n, s in services.items() if n != "mock")
    assert services["ingress"]["ports"] == ["${SEEKMESH_PUBLISH:-127.0.0.1:8080}:8080"]
    assert [p for n, s in services.items() for p in s.get("ports", []) if n != "ingress"] == []
    assert services["redis"]["volumes"] == ["redis-data:/var/lib/seekmesh/redis"]
    assert "audit-data:/var/lib/seekmesh/audit" in services["audit"]["volumes"]
    for name, wanted in (("router", {"redis"}), ("cache", {"redis"}), ("connector", {"router"}),
                         ("ingress", {"router", "audit"})):
        deps = services[name]["depends_on"]
        assert set(deps) == wanted and all(d["condition"] == "service_healthy" for d in deps.values()), name
    assert (COMPOSE / ".env").read_text().count("COMPOSE_PROFILES=demo") == 1


def test_secrets_go_only_where_they_are_read():
    doc = compose()
    config = json.loads((COMPOSE / "config" / "container.json").read_text())
    holders = {}
    for name, s in doc["services"].items():
        for secret in s.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            target = source if isinstance(secret, str) else secret.get("target", source)
            holders.setdefault(source, set()).add((name, target))
        env = s.get("environment", {})
        assert not any(k in env for k in ("SEEKMESH_UPSTREAM_API_KEY", "SEEKMESH_ADMIN_TOKEN", "SEEKMESH_AUDIT_KEYS",
                                          "SEEKMESH_CURVE_KEYS")), name
    assert holders["upstream_key"] == {("connector", "SEEKMESH_UPSTREAM_API_KEY"), ("mock", "SEEKMESH_UPSTREAM_API_KEY")}
    assert holders["admin_token"] == {("router", "SEEKMESH_ADMIN_TOKEN")}
    assert holders["audit_keys"] == {("audit", "audit_keys")}
    assert holders["cache_keys"] == {("cache", "cache_keys")}
    for role in ROLES:
        assert holders["curve_" + role] == {(role, "SEEKMESH_CURVE_KEYS")}, role
        lines = [l.split() for l in (COMPOSE / "secrets" / ("curve_" + role)).read_text().splitlines()]
        assert {l[0] for l in lines} == set(ROLES), role
        assert [l[0] for l in lines if len(l) == 3] == [role], "%s holds another role's secret key" % role
    # ... under the names the config reads them by
    assert all(m["auth"]["key_env"] == "SEEKMESH_UPSTREAM_API_KEY" for m in config["models"])
    assert config["mock"]["api_key_env"] == "SEEKMESH_UPSTREAM_API_KEY"
    assert config["router"]["admin_token_env"] == "SEEKMESH_ADMIN_TOKEN"
    assert config["audit"]["key_file"] == "/run/secrets/audit_keys"
    assert config["cache"]["key_file"] == "/run/secrets/cache_keys"
    for secret in doc["secrets"].values():
        default = secret["file"].split(":-", 1)[1].rstrip("}")
        assert (COMPOSE / default).is_file(), default


def test_the_container_configs_name_only_what_the_binaries_read():
    paths, model_fields, key_fields = read_paths()
    for file in ("container.json", "container-deepseek.json"):
        config = json.loads((COMPOSE / "config" / file).read_text())
        unknown = [p for section in SECTIONS for p, _ in leaves(config.get(section, {}), section) if p not in paths]
        assert not unknown, (file, unknown)
        for m in config["models"]:
            assert set(m) - {"endpoint", "aliases"} <= {f.split(".")[0] for f in model_fields}, (file, m["name"])


def test_the_deepseek_config_differs_only_in_its_upstream():
    demo = json.loads((COMPOSE / "config" / "container.json").read_text())
    deepseek = json.loads((COMPOSE / "config" / "container-deepseek.json").read_text())
    demo.pop("mock")
    demo.pop("models")
    assert set(deepseek.pop("models")[0]) >= {"name", "endpoint", "auth"}
    assert demo == deepseek


def test_the_cache_is_one_process_the_routers_and_connectors_use():
    """One cache (identical requests meet in one process): the compose file
    never runs two, and every router and connector names it by its service
    name at the port the cache binds (as the binaries print their config)."""
    services = compose()["services"]
    cache = services["cache"]
    assert cache["command"] == ["cache"]
    assert cache["deploy"].get("replicas", 1) == 1 and "scale" not in cache
    for file in ("container.json", "container-deepseek.json"):
        path = COMPOSE / "config" / file
        printed = {}
        for service in ("cache", "router", "connector"):
            result = subprocess.run([str(BIN / ("seekmesh-" + service)), "-c", str(path), "--print-config"],
                                    capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, (file, service, result.stderr)
            printed[service] = json.loads(result.stdout)
        listen = printed["cache"]["cache"]["listen"]
        assert re.match(r"^tcp://0\.0\.0\.0:", listen), "the cache binds %s: other containers cannot reach it" % listen
        port = listen.rsplit(":", 1)[1]
        assert printed["cache"]["cache"]["admin_listen"].startswith("0.0.0.0:"), "the healthcheck asks the admin port"
        assert printed["router"]["router"]["caches"] == ["tcp://cache:" + port], file
        assert printed["connector"]["connector"]["caches"] == ["tcp://cache:" + port], file
