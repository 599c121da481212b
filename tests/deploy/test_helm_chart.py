"""The Helm chart deploy/helm/seekmesh, checked without a cluster.

1. It renders with the Helm template language (helm-render: text/template,
   sprig and Helm's own functions; `helm template` where helm is installed)
   for the default values and variations (tests/deploy/values: external
   Redis, KEDA and monitoring on, one replica, production secrets, an
   existing Secret); values that cannot work fail with a message.
2. Every object validates against the Kubernetes API schema (k8s_schema.py)
   and the objects agree with each other: selectors, Service ports and their
   container ports, the StatefulSets' governing Services, HPA / KEDA / PDB
   targets, probes, drain budget, rolling update without unavailability.
3. The config.json the chart writes names only settings the binaries read
   (their own table, `--settings`), each service takes it with its
   container's environment (`--print-config`) and binds the ports its
   container declares on every interface, every address in it is a Service
   of the chart with that port, every SEEKMESH_* variable is one the
   binaries or the image read, and each secret reaches only the service
   that needs it.
4. The workloads run: chart_run.py starts them all with the real binaries,
   their config, env and mounts, in a network namespace where the Service
   names resolve; every readiness and liveness probe answers, every
   declared port listens, a chat and a stream go through, SIGTERM drains.
"""
import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import k8s_schema

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "seekmesh"
VALUES = Path(__file__).resolve().parent / "values"
RENDERER = Path(os.environ.get("SEEKMESH_HELM_RENDER", REPO / "build" / "bin" / "helm-render"))
VARIATIONS = ["default", "external-redis", "keda", "single", "production", "existing-secret", "no-cache"]
STAGES = ("ingress", "router", "connector")
#  The roles of the bus, each with its own CURVE secret (mesh_curve's allow-list)
ROLES = ("ingress", "router", "connector", "cache", "audit")


def render(variation, extra=()):
    args = []
    if variation != "default":
        args += ["-f", str(VALUES / (variation + ".yaml"))]
    if shutil.which("helm"):
        cmd = ["helm", "template", "seekmesh", str(CHART), "--namespace", "default", *args, *extra]
    else:
        assert RENDERER.exists(), "build the renderer: make build/bin/helm-render"
        cmd = [str(RENDERER), "--name", "seekmesh", "--namespace", "default", *args, *extra, str(CHART)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def objects(variation):
    result = render(variation)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert docs, "nothing rendered"
    return docs, result.stdout


def values_of(variation):
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if variation != "default":
        def merge(a, b):
            for k, v in b.items():
                if isinstance(v, dict) and isinstance(a.get(k), dict):
                    merge(a[k], v)
                elif v is None:
                    a.pop(k, None)
                else:
                    a[k] = v
        merge(values, yaml.safe_load((VALUES / (variation + ".yaml")).read_text()))
    return values


def by_kind(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def component(d):
    return d["metadata"]["labels"].get("app.kubernetes.io/component")


def workloads(docs):
    return {n: d for n, d in {**by_kind(docs, "Deployment"), **by_kind(docs, "StatefulSet")}.items()}


def the_config(docs):
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and "config.json" in d.get("data", {}))
    return json.loads(cm["data"]["config.json"])


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


# --- what the binaries read ------------------------------------------------------

SOURCES = [p for p in list((REPO / "services").rglob("*.c")) + list((REPO / "common").glob("*.c"))]
SECTIONS = ("mesh", "redis", "ingress", "router", "connector", "cache", "audit", "mock")
BIN = Path(os.environ.get("SEEKMESH_BIN") or REPO / "build" / "bin")


def settings():
    """The settings table every service reads its config through, as the
    binaries print it (`--settings`): name, kind, default, environment variable."""
    result = subprocess.run([str(BIN / "seekmesh-router"), "--settings"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def read_paths():
    """Every config path the services read (their settings table), and the
    fields of a model and of a key, which the table leaves to the model and
    key loaders (their AT ("...") field names and endpoint/variant paths)."""
    paths = {s["name"] for s in settings()}
    models = (REPO / "common" / "mesh_models.c").read_text()
    model_fields = set(re.findall(r'AT \("([a-z0-9_.]+)"\)', models))
    model_fields |= set(re.findall(r'"%s\.([a-z_]+)[".]', models))
    keys = (REPO / "services" / "router" / "router_keys.c").read_text()
    key_fields = set(re.findall(r'AT \("([a-z0-9_.]+)"\)', keys))
    return paths, model_fields, key_fields


def direct_env():
    """SEEKMESH_* variables read by name: the settings' overrides, getenv in
    the C sources, and the image's entry point and healthcheck."""
    names = {s["env"] for s in settings()}
    for p in SOURCES:
        names |= set(re.findall(r'getenv \("(SEEKMESH_[A-Z0-9_]+)"\)', p.read_text()))
    for script in ("seekmesh", "seekmesh-healthcheck"):
        names |= set(re.findall(r"\$\{?(SEEKMESH_[A-Z0-9_]+)", (REPO / "deploy" / "image" / script).read_text()))
    return names


def leaves(node, prefix):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, prefix + "." + k)
    else:
        yield prefix, node


# --- the tests -------------------------------------------------------------------

def test_the_schema_check_refuses_what_an_api_server_would():
    """The validator itself: a wrong field name, a wrong type, a missing
    required field and a label that is not a string are each refused."""
    good = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"ports": [{"port": 80, "targetPort": "http"}], "selector": {"a": "b"}}}
    assert k8s_schema.validate(good) == []
    assert k8s_schema.validate(dict(good, spec=dict(good["spec"], prots=[])))
    assert k8s_schema.validate(dict(good, spec={"ports": [{"port": "80"}]}))
    assert k8s_schema.validate(dict(good, spec={"ports": [{"name": "x"}]}))
    assert k8s_schema.validate(dict(good, metadata={"name": "x", "labels": {"version": 1.0}}))
    assert k8s_schema.validate(dict(good, metadata={"name": "Bad_Name"}))
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                  "spec": {"selector": {"matchLabels": {"a": "b"}},
                           "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}}
    assert k8s_schema.validate(deployment) == []
    deployment["spec"]["template"]["spec"]["containers"] = [{"name": "c", "image": "i", "ports": [{"port": 1}]}]
    assert any("containerPort" in e or "port" in e for e in k8s_schema.validate(deployment))


@pytest.mark.parametrize("variation", VARIATIONS)
def test_renders_and_validates(variation):
    docs, _ = objects(variation)
    errors = []
    for d in docs:
        errors += k8s_schema.validate(d, variation)
    assert not errors, "\n".join(errors)
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), "duplicate objects"


@pytest.mark.parametrize("variation,message", [
    ("grace-too-short", "terminationGracePeriodSeconds (20) must exceed preStopSeconds + drainSeconds"),
    ("no-redis", "redis: set redis.enabled or redis.external.url"),
])
def test_values_that_cannot_work_do_not_render(variation, message):
    result = render(variation)
    assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]


def test_default_values_make_the_whole_mesh():
    docs, _ = objects("default")
    kinds = {(d["kind"], component(d)) for d in docs}
    for stage in STAGES:
        assert ("Deployment", stage) in kinds and ("HorizontalPodAutoscaler", stage) in kinds
        assert ("PodDisruptionBudget", stage) in kinds
    assert ("StatefulSet", "audit") in kinds and ("StatefulSet", "redis") in kinds
    assert ("Deployment", "mock") in kinds
    assert ("Deployment", "cache") in kinds and ("PodDisruptionBudget", "cache") in kinds
    assert ("HorizontalPodAutoscaler", "cache") not in kinds, "one cache: identical requests meet in one process"
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert all(h["spec"]["minReplicas"] == 3 for h in hpas.values()), "3 replicas of each scalable stage"
    audit = by_kind(docs, "StatefulSet")["seekmesh-audit"]
    assert audit["spec"]["replicas"] == 1
    assert audit["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    router = by_kind(docs, "Service")["seekmesh-router"]
    assert router["spec"]["clusterIP"] == "None", "the routers are discovered through a headless Service"
    cache = by_kind(docs, "Deployment")["seekmesh-cache"]
    assert cache["spec"]["replicas"] == 1
    # never two at once, not even during an update
    assert cache["spec"]["strategy"] == {"type": "Recreate"}
    pdb = by_kind(docs, "PodDisruptionBudget")["seekmesh-cache"]
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": pdb["spec"]["selector"]}, \
        "a singleton's PDB must not block node drains"
    config = the_config(docs)
    assert config["router"]["caches"] == config["connector"]["caches"] == ["tcp://seekmesh-cache:5557"]


def test_without_the_cache_nothing_names_it():
    """cache.enabled=false: no cache objects, and the routers and connectors
    ask no cache (not the default address of one on their own pod)."""
    docs, _ = objects("no-cache")
    assert not [d for d in docs if component(d) == "cache"]
    config = the_config(docs)
    assert "cache" not in config
    assert config["router"]["caches"] == [] and config["connector"]["caches"] == []


@pytest.mark.parametrize("variation", VARIATIONS)
def test_objects_agree_with_each_other(variation):
    docs, _ = objects(variation)
    values = values_of(variation)
    loads = workloads(docs)
    services = by_kind(docs, "Service")
    for name, w in loads.items():
        spec = w["spec"]
        pod = spec["template"]
        assert selects(spec["selector"]["matchLabels"], pod["metadata"]["labels"]), name
        podspec = pod["spec"]
        assert podspec["securityContext"]["runAsNonRoot"] is True, name
        for c in podspec["containers"]:
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
            for probe in ("livenessProbe", "readinessProbe"):
                assert probe in c, (name, probe)
                port = c[probe].get("httpGet", {}).get("port")
                assert port is None or port in ports, (name, probe, port)
            if component(w) != "redis" and component(w) != "mock":
                pause = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
                drain = the_config(docs)["mesh"]["drain_ms"] / 1000
                assert pause + drain < podspec["terminationGracePeriodSeconds"], name
        if w["kind"] == "Deployment" and component(w) in STAGES:
            assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0, name
        if component(w) == "cache":
            # one process: no second pod, not even a surge during an update
            assert spec["replicas"] == 1, name
            strategy = spec["strategy"]
            assert strategy["type"] == "Recreate" or strategy["rollingUpdate"]["maxSurge"] == 0, name
        if w["kind"] == "StatefulSet":
            governing = services[spec["serviceName"]]
            assert governing["spec"].get("clusterIP") == "None", name
            assert selects(governing["spec"]["selector"], pod["metadata"]["labels"]), name
    for name, s in services.items():
        matched = [w for w in loads.values() if selects(s["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])]
        assert len(matched) == 1, "Service %s selects %d workloads" % (name, len(matched))
        ports = {p["name"]: p["containerPort"] for c in matched[0]["spec"]["template"]["spec"]["containers"]
                 for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            assert p["targetPort"] in ports, (name, p)
            if s["spec"].get("clusterIP") == "None":
                assert p["port"] == ports[p["targetPort"]], "headless %s: port %s" % (name, p)
    scaled = {}
    for kind in ("HorizontalPodAutoscaler", "ScaledObject"):
        for name, h in by_kind(docs, kind).items():
            target = h["spec"]["scaleTargetRef"]["name"]
            assert target in by_kind(docs, "Deployment"), (kind, name)
            assert target not in scaled, "%s is scaled by both %s and %s" % (target, scaled[target], kind)
            scaled[target] = kind
            stage = component(h)
            low = h["spec"].get("minReplicas", h["spec"].get("minReplicaCount"))
            assert low == values[stage]["replicas"], (kind, name)
    for name, d in by_kind(docs, "Deployment").items():
        assert ("replicas" in d["spec"]) == (name not in scaled), "%s: replicas and an autoscaler" % name
        if name not in scaled and component(d) in STAGES:
            assert d["spec"]["replicas"] == values[component(d)]["replicas"], name
    for name, p in by_kind(docs, "PodDisruptionBudget").items():
        assert any(selects(p["spec"]["selector"]["matchLabels"], w["spec"]["template"]["metadata"]["labels"])
                   for w in loads.values()), name
    for name, m in by_kind(docs, "ServiceMonitor").items():
        selected = [s for s in services.values() if selects(m["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert {component(s) for s in selected} >= {"ingress", "router", "connector", "audit"}, name
        assert all(any(p["name"] == "metrics" for p in s["spec"]["ports"]) for s in selected), name
    for name, so in by_kind(docs, "ScaledObject").items():
        for t in so["spec"]["triggers"]:
            assert "seekmesh_router_queue_depth" in t["metadata"]["query"], name


@pytest.mark.parametrize("variation", VARIATIONS)
def test_config_env_and_secrets_are_what_the_binaries_read(variation):
    docs, _ = objects(variation)
    config = the_config(docs)
    paths, model_fields, key_fields = read_paths()
    unknown = []
    for section in SECTIONS:
        for path, _ in leaves(config.get(section, {}), section):
            if path not in paths:
                unknown.append(path)
    for i, model in enumerate(config["models"]):
        for path, _ in leaves(model, ""):
            field = path[1:]
            if field not in model_fields and field.split(".")[0] not in ("endpoints", "variants", "aliases"):
                unknown.append("models.%d.%s" % (i, field))
    for i, key in enumerate(config["keys"]):
        for field in key:
            if field not in key_fields:
                unknown.append("keys.%d.%s" % (i, field))
        assert "key" not in key, "a plain key in the ConfigMap"
    assert not unknown, "settings no binary reads: %s" % unknown

    # Every address of the mesh is a Service of the chart with that port
    services = by_kind(docs, "Service")
    def strings(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from strings(v)
        elif isinstance(node, list):
            for v in node:
                yield from strings(v)
        elif isinstance(node, str):
            yield node
    for url in (s for s in strings(config) if "://" in s):
        m = re.match(r"^[a-z]+://([a-z0-9.-]+):(\d+)", url)
        if not m or m.group(1) in ("0.0.0.0",) or "." in m.group(1):
            continue                    # a wildcard bind or an outside host
        name, port = m.group(1), int(m.group(2))
        assert name in services, "%s: no Service %s" % (url, name)
        assert port in [p["port"] for p in services[name]["spec"]["ports"]], "%s: Service %s has no port %d" % (url, name, port)

    # SEEKMESH_* variables: overrides of settings the binaries read, or read by name
    known_env = direct_env()
    secret_holders = {}
    for w in workloads(docs).values():
        for c in w["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                if e["name"].startswith("SEEKMESH_"):
                    assert e["name"] in known_env, "%s: %s is read by nothing" % (component(w), e["name"])
                assert "secretKeyRef" not in e.get("valueFrom", {}), "secrets come as files, not env"
        for v in w["spec"]["template"]["spec"].get("volumes", []):
            sources = [v["secret"]] if "secret" in v else [s["secret"] for s in v.get("projected", {}).get("sources", [])]
            for source in sources:
                for item in source.get("items", []):
                    secret_holders.setdefault(item["key"], set()).add(component(w))
    assert secret_holders.get("SEEKMESH_UPSTREAM_API_KEY", set()) <= {"connector", "mock"}
    assert "connector" in secret_holders.get("SEEKMESH_UPSTREAM_API_KEY", set())
    assert secret_holders.get("SEEKMESH_ADMIN_TOKEN") == {"router"}
    assert secret_holders.get("audit_keys") == {"audit"}
    roles = [r for r in ROLES if r != "cache" or values_of(variation)["cache"]["enabled"]]
    if "cache" in roles:
        assert secret_holders.get("cache_keys") == {"cache"}
    else:
        assert "cache_keys" not in secret_holders
    for role in roles:
        assert secret_holders.get("curve_" + role) == {role}, "curve_%s: %s" % (role, secret_holders.get("curve_" + role))
    # Each role's CURVE item: its own secret key, the others' public keys only
    curve = by_kind(docs, "Secret").get("seekmesh-curve")
    if curve:
        for role in ROLES:
            lines = [l.split() for l in base64.b64decode(curve["data"]["curve_" + role]).decode().splitlines()]
            assert {l[0] for l in lines} >= set(ROLES)
            assert [l[0] for l in lines if len(l) == 3] == [role], role
    secret = by_kind(docs, "Secret")
    if variation == "production":
        data = {k: base64.b64decode(v).decode() for k, v in secret["seekmesh"]["data"].items()}
        own = base64.b64decode(secret["seekmesh-curve"]["data"]["curve_router"]).decode()
        given = next(l for l in values_of(variation)["curve"]["keys"].splitlines() if l.startswith("router "))
        assert given in own.splitlines(), "the router gets the key set of the values, not the development one"
        assert set(data) == {"SEEKMESH_UPSTREAM_API_KEY", "SEEKMESH_ADMIN_TOKEN", "audit_keys", "cache_keys"}
        assert config["audit"]["key_file"] == "/etc/seekmesh/secrets/audit_keys"
        assert config["cache"]["key_file"] == "/etc/seekmesh/secrets/cache_keys"
    if variation == "existing-secret":
        assert set(secret) == {"seekmesh-curve"}
        sources = [s["secret"] for w in workloads(docs).values() for v in w["spec"]["template"]["spec"].get("volumes", [])
                   for s in v.get("projected", {}).get("sources", []) if not s["secret"]["items"][0]["key"].startswith("curve_")]
        assert sources and all(s["name"] == "seekmesh-keys" for s in sources)


LISTEN = {"ingress": ["listen", "admin_listen", "reply_endpoint"],
          "router": ["listen", "connector_listen", "admin_listen"],
          "connector": ["admin_listen"], "cache": ["listen", "admin_listen"], "audit": ["listen", "admin_listen"],
          "mock": ["listen", "admin_listen"]}


@pytest.mark.parametrize("variation", VARIATIONS)
def test_each_service_takes_its_config_and_env(variation, tmp_path):
    """Each workload's binary reads the ConfigMap's config.json with its
    container's environment: `seekmesh-<service> --print-config` exits 0 (an
    unknown setting, a bad value or a bad override stops it, naming the
    field), binds every address on all interfaces (kubelet probes and peers
    come from other pods) at the ports its container declares, and takes
    the pod IP as the ingress's reply address."""
    docs, _ = objects(variation)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(the_config(docs)))
    for w in workloads(docs).values():
        stage = component(w)
        if stage == "redis":
            continue
        container = w["spec"]["template"]["spec"]["containers"][0]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for e in container.get("env", []):
            if "valueFrom" in e:
                value = {"status.podIP": "10.1.2.3"}[e["valueFrom"]["fieldRef"]["fieldPath"]]
            else:
                value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
            env[e["name"]] = value
        env["SEEKMESH_CONFIG"] = str(config_file)          # where the ConfigMap is mounted
        result = subprocess.run([str(BIN / ("seekmesh-" + stage)), "--print-config"], env=env,
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, "%s: %s" % (stage, result.stderr)
        printed = json.loads(result.stdout)
        declared = sorted(p["containerPort"] for p in container.get("ports", []))
        addresses = [printed[stage][k] for k in LISTEN[stage]]
        assert sorted(int(a.rsplit(":", 1)[1]) for a in addresses) == declared, (stage, addresses, declared)
        for a in addresses:
            assert re.match(r"^(tcp://)?0\.0\.0\.0:", a), "%s binds %s: not reachable from other pods" % (stage, a)
        if stage == "ingress":
            assert printed["ingress"]["reply_advertise"] == "tcp://10.1.2.3:5559"
        if stage == "router":
            assert printed["router"]["replicas"] == values_of(variation)["router"]["replicas"]
        if stage in ("router", "connector") and values_of(variation)["cache"]["enabled"]:
            # the cache they ask is the chart's cache Service at the port the cache binds
            assert printed[stage]["caches"] == ["tcp://seekmesh-cache:5557"], (stage, printed[stage]["caches"])
            assert 5557 in [p["port"] for p in by_kind(docs, "Service")["seekmesh-cache"]["spec"]["ports"]]
        elif stage in ("router", "connector"):
            assert printed[stage]["caches"] == [], "no cache stage, yet %s asks %s" % (stage, printed[stage]["caches"])


def run_chart(variation, tmp_path, chat=None):
    _, text = objects(variation)
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(text)
    cmd = ["unshare", "--net", "--mount", "--fork", "/usr/bin/python3",
           str(Path(__file__).resolve().parent / "chart_run.py"), str(rendered), str(tmp_path)]
    if chat:
        cmd += ["--chat", chat]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace (unshare)")
@pytest.mark.parametrize("variation", ["default", "production"])
def test_the_rendered_workloads_run(variation, tmp_path):
    report = run_chart(variation, tmp_path, chat="sk-seekmesh-dev" if variation == "default" else None)
    pods = report["pods"]
    expected = {"default": {"ingress", "router", "connector", "cache", "audit", "redis", "mock"},
                "production": {"ingress", "router", "connector", "cache", "audit", "redis"}}[variation]
    assert {p["component"] for p in pods.values()} == expected
    for name, p in pods.items():
        assert p["running"], "%s exited:\n%s" % (name, p["log"])
        assert p["ready"], "%s not ready: %s\n%s" % (name, p["readiness"], p["log"])
        assert p["live"], "%s not live: %s" % (name, p["liveness"])
        assert all(p["ports"].values()), "%s: ports not listening: %s" % (name, p["ports"])
        assert p["exit"] == 0, "%s did not stop cleanly on SIGTERM: %s\n%s" % (name, p["exit"], p["log"])
    held = {p["component"]: set(p["secrets"]) for p in pods.values()}
    if variation == "production":
        assert held["connector"] == {"SEEKMESH_UPSTREAM_API_KEY", "SEEKMESH_CURVE_KEYS"}
        assert held["router"] == {"SEEKMESH_ADMIN_TOKEN", "SEEKMESH_CURVE_KEYS"}
        assert held["audit"] == {"audit_keys", "SEEKMESH_CURVE_KEYS"}
        assert held["ingress"] == {"SEEKMESH_CURVE_KEYS"}
        assert held["cache"] == {"cache_keys", "SEEKMESH_CURVE_KEYS"}
        assert held["redis"] == set()
        audit = next(p for p in pods.values() if p["component"] == "audit")
        assert "key k1 encrypts" in audit["log"]
        assert report["admin_models_status"] == 200
    else:
        assert {c: s for c, s in held.items() if s} == {c: {"SEEKMESH_CURVE_KEYS"} for c in
                                                         ROLES}, held
        assert report["admin_models_status"] == 403, "no token: the admin API is off"
        chat, stream, first, second = report["chat"]
        assert chat["status"] == 200 and '"content":"Echo: hello from the chart"' in chat["body"]
        assert stream["status"] == 200 and stream["body"].rstrip().endswith("data: [DONE]")
        # the routers ask the cache pod, the connectors give it the answer
        assert first["status"] == 200 and first["cache"] == "miss", first
        assert second["status"] == 200 and second["cache"] == "hit", second
        assert '"content":"Echo: cache me, chart"' in second["body"]
