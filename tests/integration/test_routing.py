"""Where requests go, and what happens when an upstream fails.

Two mock upstreams (instances of seekmesh-mock) stand for two hosts; a
fault switched on at one's admin port (/mock/fault) makes it fail.

- A/B variants by weight, sticky per user
- endpoints by region and priority
- scenario 9: a host failing 5 times in a row is ejected for a growing
  time; traffic moves to the healthy host and comes back when it heals
- scenario 8: an upstream answering 503/429 to everything: bounded retries
  (the retry budget), then the client's error with Retry-After
- fallback to another model (connect error, 5xx, 429), which the response
  names (model field, x-seekmesh-model)
- a model's circuit breaker opens, fails fast, and closes after a trial
"""
import re
import time

from meshlib import echo, parallel

MOCK0 = "http://127.0.0.1:9100/v1/chat/completions"
MOCK1 = "http://127.0.0.1:9110/v1/chat/completions"
NOWHERE = "http://127.0.0.1:9101/v1/chat/completions"      # nothing listens there
NO_AUTH = {"type": "none"}


def model(name, endpoint=None, **extra):
    entry = {"name": name, "auth": NO_AUTH, "upstream_model": name}
    if endpoint:
        entry["endpoint"] = endpoint
    entry.update(extra)
    return entry


MODELS = [
    model("solo", MOCK0),
    model("primary", MOCK0, fallback="backup"),
    model("deadend", NOWHERE, fallback="backup"),
    model("backup", MOCK1, upstream_model="qwen-7b"),
    model("multi", endpoints=[{"url": MOCK0}, {"url": MOCK1}]),
    model("regional", endpoints=[{"url": MOCK0, "region": "us"}, {"url": MOCK1, "region": "eu"}]),
    model("tiered", endpoints=[{"url": MOCK0, "priority": 0}, {"url": MOCK1, "priority": 1}]),
    {"name": "ab", "variants": [{"model": "solo", "weight": 90}, {"model": "backup", "weight": 10}]},
]


def config(**router):
    # min_concurrency 10: a retry counts as in flight until its DONE, which
    # the connector batches (5 ms); these tests send requests back to back
    settings = {"region": "eu", "retry": {"min_concurrency": 10},
                "outlier": {"consecutive_failures": 5, "base_ejection_ms": 500, "max_ejection_ms": 4000},
                "breaker": {"consecutive_failures": 1000, "open_ms": 1000}}
    for key, value in router.items():
        settings[key] = dict(settings.get(key, {}), **value) if isinstance(value, dict) else value
    return {"mesh": {"instances": {"mock": 2}}, "router": settings, "models": MODELS}


def user(text, model="solo", **extra):
    return dict({"model": model, "messages": [{"role": "user", "content": text}]}, **extra)


def served(mesh, instance):
    """Chat requests a mock instance has received"""
    return sum(v for k, v in mesh.metrics("mock", instance).items()
               if k.startswith("seekmesh_mock_requests_total"))


def fault(mesh, instance, **settings):
    status, body = mesh.admin_call("PUT", "/mock/fault", settings, token=None, service="mock",
                                   instance=instance)
    assert status == 200, body


def heal(mesh, instance):
    assert mesh.admin_call("DELETE", "/mock/fault", token=None, service="mock",
                           instance=instance)[0] == 200


def router_metric(mesh, prefix, *parts):
    return sum(v for k, v in mesh.metrics("router").items()
               if k.startswith(prefix) and all(p in k for p in parts))


def test_variants_split_by_weight_and_stick_to_a_user(make_mesh):
    mesh = make_mesh(config())
    answered = {mesh.chat(user("hi", "ab", user="alice"))[1]["x-seekmesh-model"] for _ in range(10)}
    assert len(answered) == 1
    counts = {"solo": 0, "backup": 0}
    for i in range(300):
        status, headers, body = mesh.chat(user("split", "ab", user="user-%d" % i))
        assert status == 200, body
        counts[headers["x-seekmesh-model"]] += 1
        # the body names the upstream model that answered
        assert body["model"] == ("qwen-7b" if headers["x-seekmesh-model"] == "backup" else "solo")
    assert 12 <= counts["backup"] <= 54, counts        # 10 % of 300, loosely


def test_region_first_then_priority(make_mesh):
    mesh = make_mesh(config())
    before = served(mesh, 0), served(mesh, 1)
    for _ in range(10):
        assert mesh.chat(user("eu", "regional"))[0] == 200
    assert (served(mesh, 0), served(mesh, 1)) == (before[0], before[1] + 10)
    for _ in range(10):
        assert mesh.chat(user("tier 0", "tiered"))[0] == 200
    assert (served(mesh, 0), served(mesh, 1)) == (before[0] + 10, before[1] + 10)


def test_failing_host_is_ejected_for_a_growing_time(make_mesh):
    """RELIABILITY.md scenario 9"""
    mesh = make_mesh(config())
    url1 = mesh.shift_url(MOCK1)
    fault(mesh, 1, status=503)
    # every client request succeeds: a failure on host 1 is retried on host 0;
    # host 1 gets about half of them (by weight) until its 5th failure in a row
    for i in range(60):
        status, headers, body = mesh.chat(user("spread %d" % i, "multi"))
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] == echo("spread %d" % i)
        if i >= 11 and router_metric(mesh, "seekmesh_router_endpoint_ejections_total", url1):
            break
    assert router_metric(mesh, "seekmesh_router_endpoint_ejections_total", url1) >= 1
    log = mesh.logs("router-0")
    assert re.search(r"endpoint %s ejected for 500 ms" % re.escape(url1), log), log
    # while ejected, host 1 gets nothing
    at = served(mesh, 1)
    for i in range(10):
        assert mesh.chat(user("ejected", "multi"))[0] == 200
    if router_metric(mesh, "seekmesh_router_endpoint_ejections_total", url1) == 1:
        assert served(mesh, 1) == at
    # failing again after the ejection: ejected again, twice as long
    deadline = time.time() + 10
    while not re.search(r"endpoint %s ejected for 1000 ms" % re.escape(url1), mesh.logs("router-0")):
        assert time.time() < deadline, mesh.logs("router-0")
        assert mesh.chat(user("again", "multi"))[0] == 200
        time.sleep(0.05)
    # healed: host 1 takes traffic again once its ejection ends
    heal(mesh, 1)
    at = served(mesh, 1)
    deadline = time.time() + 5
    while served(mesh, 1) == at:
        assert time.time() < deadline, "host 1 never came back"
        assert mesh.chat(user("healed", "multi"))[0] == 200
        time.sleep(0.05)


def test_upstream_failing_everything_gets_bounded_retries(make_mesh):
    """RELIABILITY.md scenario 8, without a fallback"""
    mesh = make_mesh(config())
    fault(mesh, 0, status=503, retry_after=2)
    before = served(mesh, 0)
    for i in range(10):
        status, headers, body = mesh.chat(user("down %d" % i))
        assert status == 503, body
        assert headers["retry-after"] == "2" and headers["x-should-retry"] == "true", (i, headers, body)
        assert body["error"]["code"] == "upstream_overloaded"
        assert headers["x-seekmesh-model"] == "solo"
    # max_tries 2: one retry per request, never more
    assert served(mesh, 0) - before == 20
    assert router_metric(mesh, "seekmesh_router_retries_total", 'result="sent"') == 10
    fault(mesh, 0, status=429, retry_after=3)
    status, headers, body = mesh.chat(user("limited"))
    assert status == 429 and headers["retry-after"] == "3", body
    assert body["error"]["type"] == "rate_limit_error"


def test_retry_budget_caps_retries(make_mesh):
    """No retry storm: with no budget left, failures are not retried at all"""
    mesh = make_mesh(config(retry={"budget_percent": 0, "min_concurrency": 0}))
    fault(mesh, 0, status=503)
    before = served(mesh, 0)
    results = parallel([lambda i=i: mesh.chat(user("storm %d" % i)) for i in range(20)])
    assert all(status == 503 for status, _, _ in results)
    assert served(mesh, 0) - before == 20
    assert router_metric(mesh, "seekmesh_router_retries_total", 'result="over_budget"') == 20


def test_fallback_serves_and_says_so(make_mesh):
    """RELIABILITY.md scenario 8 with a fallback, and a connect error"""
    mesh = make_mesh(config())
    fault(mesh, 0, status=503)
    status, headers, body = mesh.chat(user("rescue", "primary"))
    assert status == 200, body
    assert headers["x-seekmesh-model"] == "backup"
    assert body["model"] == "qwen-7b"
    assert body["choices"][0]["message"]["content"] == echo("rescue")
    stream = mesh.stream(user("rescue stream", "primary"))
    stream.read_all(timeout=10)
    assert stream.status == 200 and stream.headers["x-seekmesh-model"] == "backup"
    assert stream.content() == echo("rescue stream")
    assert all('"model":"qwen-7b"' in e for e in stream.data_events()[:-1])
    stream.close()
    fault(mesh, 0, status=429)
    status, headers, body = mesh.chat(user("after 429", "primary"))
    assert status == 200 and headers["x-seekmesh-model"] == "backup", body
    # nothing listens: the connect error falls back too
    status, headers, body = mesh.chat(user("no host", "deadend"))
    assert status == 200 and headers["x-seekmesh-model"] == "backup", body
    assert router_metric(mesh, "seekmesh_router_fallbacks_total", 'model="primary"',
                         'fallback="backup"') == 3
    # a client error is not the upstream's failure: no fallback
    heal(mesh, 0)
    status, _, body = mesh.chat(user("bad", "primary", mock={"status": 400}))
    assert status == 400, body


def test_breaker_opens_fails_fast_and_closes(make_mesh):
    mesh = make_mesh(config(breaker={"consecutive_failures": 3, "open_ms": 1000}))
    fault(mesh, 0, status=503)
    for _ in range(2):                 # 2 tries each: 4 failures in a row
        assert mesh.chat(user("failing"))[0] == 503
    gauge = 'seekmesh_router_breaker_open{model="solo"}'
    assert mesh.metric("router", gauge) == 1
    at = served(mesh, 0)
    status, headers, body = mesh.chat(user("fast"))
    assert status == 503 and body["error"]["code"] == "model_unavailable", body
    assert int(headers["retry-after-ms"]) > 0
    assert served(mesh, 0) == at        # refused without calling the upstream
    # a model with a fallback is served by it while the circuit is open
    for _ in range(2):
        mesh.chat(user("failing", "primary"))
    at = served(mesh, 0)
    status, headers, _ = mesh.chat(user("open", "primary"))
    assert status == 200 and headers["x-seekmesh-model"] == "backup"
    assert served(mesh, 0) == at
    # healed, and once open_ms has passed: one trial, then closed.  Until
    # then the model is refused fast; poll for the trial's success
    heal(mesh, 0)
    healed = time.time()
    while True:
        status, _, body = mesh.chat(user("trial"))
        if status == 200:
            break
        assert status == 503 and time.time() - healed < 3, body
        time.sleep(0.05)
    mesh.wait_metric("router", gauge, lambda v: v == 0, timeout=1)
    assert mesh.chat(user("closed"))[0] == 200
