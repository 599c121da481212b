"""compose/docker-compose.yml for real: podman builds the image (from a
debootstrapped Debian 12 base, no registry), Debian's docker-compose brings
the mesh up on the mock upstream through podman's Docker-compatible API,
and clients use it through the published port: curl-like requests, the
openai SDK suite, then a load of chats and streams while connectors are
scaled and restarted and a router crashes, and while routers are scaled.
`down -v` leaves nothing behind.  `make compose-test` runs this file.

What counts as failed: a request that still fails after the retries the
openai SDKs make (twice, after Retry-After, for connection errors and
408/409/429/5xx), or a first attempt that failed any other way than a
clean refusal (503 or 429 in the OpenAI envelope, with Retry-After): a
reset connection, a 502, a broken stream or wrong content never passes.

The tests run in order on one compose project (module-scoped fixture).
Routers behind one name are each found (the ingress and the connectors
re-resolve the service name), and what a killed router held is sent again
by the ingress, so no request waits for its client's timeout."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import composelib
from composelib import KEY, REPO, Load, podman

IMAGE = os.environ.get("SEEKMESH_TEST_IMAGE", "localhost/seekmesh:test")
VOLUMES_BEFORE = set()
SERVICES = {"redis": 1, "audit": 1, "cache": 1, "router": 1, "connector": 1, "ingress": 1, "mock": 1}
ADMIN_PORT = {"ingress": 9080, "router": 9081, "connector": 9082, "cache": 9083, "audit": 9084, "mock": 9109}

#  Every load of the run, for the audit check at the end
LOADS = []


def report(load, phase):
    print("\n%s: %s" % (phase, load.summary()))


def assert_clean(load, phase, allow_refusals=True):
    """No request failed after SDK retries; first attempts failed only as
    clean refusals (or not at all)."""
    report(load, phase)
    failed = load.failed()
    assert not failed, "%s: %d requests failed after retries, e.g. %s" % (phase, len(failed), failed[:3])
    for o in load.first_attempt_failures():
        a = o.attempts[0]
        clean = a.kind == "status" and a.status in (429, 503) and (
            "retry-after" in a.headers or "retry-after-ms" in a.headers)
        assert allow_refusals and clean, "%s: a first attempt failed uncleanly: %r" % (phase, o)


def build_image():
    base = os.environ.get("SEEKMESH_BASE_IMAGE")
    if not base:
        base = composelib.BASE_IMAGE
        if podman("image", "exists", base, check=False).returncode != 0:
            subprocess.run([str(REPO / "scripts" / "base-image"), "-t", base], check=True,
                           env=composelib.podman_env(), timeout=1200)
    podman("build", "--format", "docker", "--build-arg", "BASE_IMAGE=" + base, "-t", IMAGE, str(REPO),
           timeout=1800)


@pytest.fixture(scope="module")
def project():
    global VOLUMES_BEFORE
    VOLUMES_BEFORE = set(podman("volume", "ls", "-q").stdout.split())
    started = time.monotonic()
    build_image()
    print("\nimage built in %.0f s" % (time.monotonic() - started))
    service = composelib.PodmanService()
    p = composelib.Project(service, IMAGE)
    try:
        up = time.monotonic()
        p.compose("up", "-d")
        p.pin_bridge_mac()
        p.wait_healthy(SERVICES)
        print("compose up, every service healthy, in %.0f s" % (time.monotonic() - up))
        yield p
    finally:
        p.down()
        service.stop()


def post(port, body, key=KEY, timeout=30):
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("POST", "/v1/chat/completions", json.dumps(body),
                 {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = conn.getresponse()
    headers = {k.lower(): v for k, v in r.getheaders()}
    data = r.read()
    conn.close()
    return r.status, headers, data


def test_image_runs_unprivileged_with_a_healthcheck(project):
    image = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    assert image["Config"]["User"] == "10001:10001"
    assert image["Config"]["Entrypoint"] == ["/usr/local/bin/seekmesh"]
    assert "seekmesh-healthcheck" in " ".join(image["Healthcheck"]["Test"])
    router = next(iter(project.containers("router")))
    release = podman("exec", router, "cat", "/etc/os-release").stdout
    assert 'VERSION_CODENAME=bookworm' in release
    assert podman("exec", router, "id", "-u").stdout.strip() == "10001"
    #  The healthcheck really asks the admin port: pointed elsewhere it fails
    assert podman("exec", router, "seekmesh-healthcheck", check=False).returncode == 0
    wrong = podman("exec", "-e", "SEEKMESH_ROUTER_ADMIN_LISTEN=127.0.0.1:1", router,
                   "seekmesh-healthcheck", check=False)
    assert wrong.returncode == 1 and "failed" in wrong.stderr


def test_containers_are_locked_down(project):
    containers = project.containers()
    assert sorted(c["Config"]["Labels"]["com.docker.compose.service"] for c in containers.values()) \
        == sorted(SERVICES)
    for name, c in containers.items():
        host = c["HostConfig"]
        assert host["ReadonlyRootfs"] is True, name
        assert host["RestartPolicy"]["Name"] == "unless-stopped", name
        assert host["Memory"] > 0 and host["NanoCpus"] > 0, (name, host["Memory"], host["NanoCpus"])
        assert host["PidsLimit"] == 64, name
        limits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]}
        assert limits.get("RLIMIT_NOFILE") == (16384, 16384), (name, limits)
        assert host["LogConfig"]["Size"] in ("10MB", "10mb", "10M", "10.49MB"), (name, host["LogConfig"])
        #  The root file system refuses writes
        wrote = podman("exec", name, "touch", "/usr/local/bin/x", check=False)
        assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr, name


def test_secrets_reach_only_their_services(project):
    expected = {"SEEKMESH_UPSTREAM_API_KEY": {"connector", "mock"}, "SEEKMESH_ADMIN_TOKEN": {"router"},
                "SEEKMESH_CURVE_KEYS": {"ingress", "router", "connector", "cache", "audit"}}
    for name, c in project.containers().items():
        service = c["Config"]["Labels"]["com.docker.compose.service"]
        #  Never given through the container's environment
        env_names = {e.split("=", 1)[0] for e in c["Config"]["Env"]}
        assert not env_names & set(expected), (name, env_names & set(expected))
        #  The service process has exactly the secrets its service reads
        environ = podman("exec", name, "cat", "/proc/1/environ").stdout.split("\0")
        have = {e.split("=", 1)[0] for e in environ if e}
        for secret, readers in expected.items():
            assert (secret in have) == (service in readers), (name, secret)
        # The bus keys: its own secret key, no other role's
        curve = next((e.split("=", 1)[1] for e in environ if e.startswith("SEEKMESH_CURVE_KEYS=")), "")
        own = [line.split()[0] for line in curve.splitlines() if len(line.split()) == 3]
        assert own == ([service] if service in expected["SEEKMESH_CURVE_KEYS"] else []), (name, own)
        has_audit_keys = podman("exec", name, "test", "-r", "/run/secrets/audit_keys", check=False).returncode == 0
        assert has_audit_keys == (service == "audit"), name
        has_cache_keys = podman("exec", name, "test", "-r", "/run/secrets/cache_keys", check=False).returncode == 0
        assert has_cache_keys == (service == "cache"), name
    #  The router's admin API takes the token from the secret
    router = next(iter(project.containers("router")))
    models = podman("exec", router, "seekmesh", "ctl", "models", "list").stdout
    assert "deepseek-chat" in models
    #  The audit store encrypts with the key ring from the secret
    audit = next(iter(project.containers("audit")))
    keys = (REPO / "compose" / "secrets" / "audit_keys").read_text().split()[0]
    log = podman("logs", audit).stderr + podman("logs", audit).stdout
    assert "key %s encrypts" % keys in log


def test_chat_and_stream_through_the_published_port(project):
    status, headers, data = post(project.port, {"model": "deepseek-chat",
                                                "messages": [{"role": "user", "content": "hello"}]})
    assert status == 200, data
    body = json.loads(data)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Echo: hello"
    assert len(headers["x-request-id"]) == 26
    for model in ("deepseek-chat", "deepseek-chat-ws", "deepseek-reasoner"):
        status, headers, data = post(project.port, {"model": model, "stream": True,
                                                    "messages": [{"role": "user", "content": "hi there"}]})
        assert status == 200 and headers["content-type"].startswith("text/event-stream"), (model, data)
        text = data.decode()
        assert text.endswith("data: [DONE]\n\n"), (model, text[-200:])
        content, why = composelib._sse_content(text)
        assert not why, (model, why)
        assert content == "Echo: hi there", (model, content)
    status, headers, data = post(project.port, {"model": "deepseek-chat",
                                                "messages": [{"role": "user", "content": "hello"}]},
                                 key="sk-wrong")
    assert status == 401 and json.loads(data)["error"]["type"], data


def test_the_cache_serves_a_repeat(project):
    """The one cache container: a cacheable request is a miss, then the
    same request through the published port is a hit with the same answer,
    and the cache counted both (its admin port, as the healthcheck asks)."""
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "cache me in containers"}]}
    import http.client
    verdicts = []
    for _ in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", project.port, timeout=30)
        conn.request("POST", "/v1/chat/completions", json.dumps(body),
                     {"Authorization": "Bearer " + KEY, "Content-Type": "application/json",
                      "x-seekmesh-cache": "ttl=60"})
        r = conn.getresponse()
        data = json.loads(r.read())
        conn.close()
        assert r.status == 200, data
        assert data["choices"][0]["message"]["content"] == "Echo: cache me in containers"
        verdicts.append(r.getheader("x-seekmesh-cache"))
    assert verdicts == ["miss", "hit"], verdicts
    caches = project.containers("cache")
    assert len(caches) == 1
    counted = project.metrics(next(iter(caches)), 9083)
    assert counted.get('seekmesh_cache_lookups_total{result="hit"}', 0) >= 1, counted
    assert counted.get("seekmesh_cache_stored_total", 0) >= 1, counted
    #  What it keeps in Redis is sealed with the key ring from its secret
    key = (REPO / "compose" / "secrets" / "cache_keys").read_text().split()[0]
    logs = podman("logs", next(iter(caches)))
    assert "answers in Redis sealed with key %s" % key in logs.stdout + logs.stderr


def test_openai_sdk_suite(project):
    """The whole suite, as tests/integration/test_sdk.py runs it on processes:
    every test passes, none skipped; its cancellation checks read the one
    connector's metrics (published on 127.0.0.1 by the test's override)."""
    sys.path.insert(0, str(REPO / "tests" / "integration"))
    from test_sdk import BUDGET_KEY, MIN_PASSED, NARROW_KEY
    sdk = REPO / "tests" / "sdk"
    #  retry.test.js's keys: a budget of one token, one model only (made at
    #  run time through the router's admin API, as an operator would)
    router = next(iter(project.containers("router")))
    for args in (["--id", "sdk-budget", "--budget", "1", "--key", BUDGET_KEY],
                 ["--id", "sdk-narrow", "--model", "deepseek-reasoner", "--key", NARROW_KEY]):
        podman("exec", router, "seekmesh", "ctl", "keys", "add", "--tenant", "sdk", *args)
    assert (sdk / "node_modules" / "openai").exists(), "run `npm ci` in tests/sdk (make does)"
    connector = next(iter(project.containers("connector")))
    admin = podman("port", connector, "9082").stdout.split()[0]
    env = dict(os.environ, SEEKMESH_BASE_URL="http://127.0.0.1:%d/v1" % project.port, SEEKMESH_API_KEY=KEY,
               SEEKMESH_CONNECTOR_ADMIN_URL="http://%s" % admin, SEEKMESH_BUDGET_KEY=BUDGET_KEY,
               SEEKMESH_NARROW_KEY=NARROW_KEY)
    result = subprocess.run(["node", "--test", "--test-concurrency=1"], cwd=sdk, env=env, capture_output=True,
                            text=True, timeout=300)
    #  The failed tests' own blocks: the whole TAP is longer than a message
    failed = re.findall(r"^ *not ok .*?(?=^ *(?:ok|not ok) |\Z)", result.stdout, re.M | re.S)
    assert result.returncode == 0, "".join(failed)[-8000:] + result.stdout[-1500:] + result.stderr[-3000:]
    counts = dict(re.findall(r"^# (pass|fail|skipped|todo|cancelled) (\d+)$", result.stdout, re.M))
    assert counts.get("fail") == "0" and counts.get("cancelled") == "0", counts
    assert counts.get("skipped") == "0" and counts.get("todo") == "0", counts
    assert int(counts.get("pass", 0)) >= MIN_PASSED, counts
    print("\nopenai SDK suite: %s" % counts)


def test_scale_connectors_under_load(project):
    load = Load(project.port).start()
    LOADS.append(load)
    load.wait_for(40)
    project.compose("up", "-d", "--no-recreate", "--scale", "connector=3")
    project.wait_healthy(dict(SERVICES, connector=3))
    #  The router hears from all three, and they all take requests
    router = next(iter(project.containers("router")))
    deadline = time.monotonic() + 10
    while project.metrics(router, 9081).get("seekmesh_router_connectors") != 3:
        assert time.monotonic() < deadline, "the router does not see 3 connectors: %s" % {
            k: v for k, v in project.metrics(router, 9081).items() if "connector" in k}
        time.sleep(0.2)
    load.wait_for(150)
    load.stop()
    served = {name: project.metrics(name, 9082).get('seekmesh_connector_requests_total{outcome="ok"}', 0)
              for name in project.containers("connector")}
    assert all(v > 0 for v in served.values()), served
    assert_clean(load, "scale connectors to 3", allow_refusals=False)


def test_restart_connectors_under_load(project):
    """`docker-compose restart connector` restarts every replica at once:
    each drains (SIGTERM) and comes back; while none has capacity the router
    refuses with 503 + Retry-After, which the SDKs wait out."""
    load = Load(project.port).start()
    LOADS.append(load)
    load.wait_for(40)
    before = {name: c["State"]["StartedAt"] for name, c in project.containers("connector").items()}
    project.compose("restart", "-t", "15", "connector")
    project.wait_healthy(dict(SERVICES, connector=3))
    after = {name: c["State"]["StartedAt"] for name, c in project.containers("connector").items()}
    assert all(after[n] != before[n] for n in before), "not every connector restarted"
    load.wait_for(150)
    load.stop()
    assert_clean(load, "docker-compose restart connector")


def test_router_crash_under_load(project):
    """The router process killed (SIGKILL from outside, as a crash):
    the restart policy brings the container back and the mesh serves again;
    streams already flowing do not pass through the router."""
    load = Load(project.port).start()
    LOADS.append(load)
    load.wait_for(40)
    name, c = next(iter(project.containers("router").items()))
    os.kill(c["State"]["Pid"], 9)
    killed_at = time.monotonic() - load.started
    deadline = time.monotonic() + 60
    while True:
        state = project.containers("router", all=True)[name]
        if state["RestartCount"] >= 1 and state["State"].get("Health", {}).get("Status") == "healthy":
            break
        assert time.monotonic() < deadline, "the router was not restarted: %s" % state["State"]
        time.sleep(0.2)
    crash_at = load.count()
    load.wait_for(150)
    load.stop()
    assert all(o.ok for o in load.outcomes[crash_at + 20:]), "requests failed after the router returned"
    # A request inside the router when it died, or sent to it before the
    # ingress saw it go, is sent again by the ingress (to the router once it
    # is back): none waits for its client's timeout (30 s here)
    hung = [o for o in load.outcomes if o.attempts[0].kind == "timeout"]
    assert not hung, "%d requests hung until the client's timeout (killed at %.1f s): %s" % (
        len(hung), killed_at, hung[:3])
    assert_clean(load, "router killed")


def test_scale_routers_under_load(project):
    load = Load(project.port).start()
    LOADS.append(load)
    load.wait_for(40)
    project.compose("up", "-d", "--no-recreate", "--scale", "router=3", "--scale", "connector=3")
    project.wait_healthy(dict(SERVICES, router=3, connector=3))
    load.wait_for(100)
    load.stop()
    assert_clean(load, "scale routers to 3", allow_refusals=False)


def test_every_router_serves_once_scaled(project):
    """The ingress and the connectors find every router behind the service
    name (they re-resolve it), so each of the three has connectors and
    takes requests."""
    load = Load(project.port).start()
    LOADS.append(load)
    deadline = time.monotonic() + 30
    while True:
        load.wait_for(50)
        seen = {name: (project.metrics(name, 9081).get("seekmesh_router_connectors", 0),
                       sum(v for k, v in project.metrics(name, 9081).items()
                           if k.startswith("seekmesh_router_admitted_total")))
                for name in project.containers("router")}
        if all(connectors > 0 and admitted > 0 for connectors, admitted in seen.values()):
            break
        if time.monotonic() > deadline:
            load.stop()
            pytest.fail("not every router has connectors and requests: %s" % seen)
    load.stop()
    assert_clean(load, "three routers")


def test_router_of_three_killed_under_load(project):
    """Scenario 3 with replicas: the router that carries the traffic is
    killed; the others serve new requests within a second."""
    load = Load(project.port).start()
    LOADS.append(load)
    load.wait_for(40)
    busiest = max(project.containers("router"),
                  key=lambda n: project.metrics(n, 9081).get("seekmesh_router_done_total", 0))
    podman("kill", "-s", "KILL", busiest)
    killed_at = time.monotonic() - load.started
    load.wait_for(150)
    load.stop()
    late = [o for o in load.outcomes if o.at > killed_at + 1.0 and o.attempts[0].kind]
    assert not late, "first attempts still failing over 1 s after the kill: %s" % late[:3]
    assert_clean(load, "a router of three killed")
    podman("start", busiest)


def test_every_request_is_in_the_audit_trail(project):
    """Every load request that was answered has its audit record, once, and
    the store's chain verifies."""
    audit = next(iter(project.containers("audit")))
    answered = {a.request_id for load in LOADS for o in load.outcomes for a in o.attempts
                if a.kind == "" and a.request_id}
    assert len(answered) > 500
    deadline = time.monotonic() + 30
    while True:
        out = podman("exec", audit, "seekmesh", "ctl", "audit", "query", "--json", "--since", "2h",
                     "--limit", "1000000", "--dir", "/var/lib/seekmesh/audit").stdout
        ids = [json.loads(line)["id"] for line in out.splitlines() if line.strip()]
        missing = answered - set(ids)
        if not missing:
            break
        assert time.monotonic() < deadline, "%d answered requests have no audit record" % len(missing)
        time.sleep(1)
    assert len(ids) == len(set(ids)), "duplicate audit records"
    verify = podman("exec", audit, "seekmesh", "ctl", "audit", "verify", "--dir", "/var/lib/seekmesh/audit")
    assert verify.stdout.startswith("ok:"), verify.stdout
    #  Redis keeps its append-only file in its volume
    redis = next(iter(project.containers("redis")))
    assert podman("exec", redis, "redis-cli", "config", "get", "appendonly").stdout.split() == ["appendonly", "yes"]
    files = podman("exec", redis, "ls", "/var/lib/seekmesh/redis/appendonlydir").stdout
    assert ".aof" in files


def test_down_removes_everything(project):
    result = project.down()
    assert result.returncode == 0, result.stderr
    label = "label=com.docker.compose.project=%s" % project.name
    assert podman("ps", "-aq", "--filter", label).stdout.split() == []
    volumes = set(podman("volume", "ls", "-q").stdout.split())
    assert volumes <= VOLUMES_BEFORE, "volumes left: %s" % (volumes - VOLUMES_BEFORE)
    networks = podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert project.name + "_mesh" not in networks
