"""The response cache stage (seekmesh-cache) against real processes, a real
Redis and the mock upstream, whose request counter says how many calls
reached the upstream: hits (stream and not, both upstream kinds), coalescing
of identical requests in flight with stream fan-out, who may leave, failures
shared by followers, tenants, no-store / no-cache, TTLs, FAQ entries through
seekmeshctl, quotas, the audit trail, and the cache or Redis going away
under load."""
import copy
import json
import os
import signal
import socket
import sqlite3
import glob
import subprocess
import threading
import time
import uuid

import pytest

from meshlib import ADMIN_TOKEN, BIN, CHAT, KEY, REPO, Mesh, echo, parallel

ACME_KEY, BETA_KEY = "sk-cache-acme", "sk-cache-beta"
LIMITED_KEY, TOKENS_KEY = "sk-cache-rpm3", "sk-cache-tpm"
TTL = {"x-seekmesh-cache": "ttl=300"}


def models():
    """local.json's models, and cached ones: per tenant on HTTP and on a
    WebSocket upstream, shared by tenants, and one with a temperature limit"""
    base = json.loads((REPO / "compose/config/local.json").read_text())["models"]
    chat = next(m for m in base if m["name"] == "deepseek-chat")
    ws = next(m for m in base if m["name"] == "deepseek-chat-ws")
    extra = []
    for name, model, cache in (("cached-chat", chat, {"ttl_s": 300}),
                               ("cached-ws", ws, {"ttl_s": 300}),
                               ("shared-chat", chat, {"ttl_s": 300, "shared": True}),
                               ("cool-chat", chat, {"ttl_s": 300, "max_temperature": 0.5})):
        entry = copy.deepcopy(model)
        entry["name"] = name
        entry["upstream_model"] = "deepseek-chat"
        entry.pop("aliases", None)
        entry["cache"] = cache
        #  No concurrency limit: quotas come before the cache, and a herd
        #  of identical requests would meet it before it could coalesce
        entry.pop("max_concurrency", None)
        extra.append(entry)
    return base + extra


def keys():
    return [{"id": "dev", "key": KEY, "tenant": "dev"},
            {"id": "acme", "key": ACME_KEY, "tenant": "acme"},
            {"id": "beta", "key": BETA_KEY, "tenant": "beta"},
            {"id": "limited", "key": LIMITED_KEY, "tenant": "limited", "rpm": 3},
            {"id": "tokens", "key": TOKENS_KEY, "tenant": "tokens", "tpm": 7000}]


def config(**cache):
    out = {"models": models(), "keys": keys()}
    if cache:
        out["cache"] = cache
    return out


@pytest.fixture(scope="module")
def mesh(make_mesh):
    return make_mesh(config())


@pytest.fixture(scope="module")
def make_mesh(tmp_path_factory):
    """Module-scoped meshes (the conftest one is per test)"""
    from conftest import TEST_CONFIG
    from meshlib import _merge
    made = []

    def make(overrides=None, env=None):
        m = Mesh(tmp_path_factory.mktemp("mesh"), _merge(copy.deepcopy(TEST_CONFIG), overrides or {}),
                 env).up()
        made.append(m)
        return m

    yield make
    for m in made:
        m.down()


@pytest.fixture
def fresh_mesh(tmp_path_factory):
    """A mesh a test may break"""
    from conftest import TEST_CONFIG
    from meshlib import _merge
    made = []

    def make(overrides=None, env=None):
        m = Mesh(tmp_path_factory.mktemp("mesh"), _merge(copy.deepcopy(TEST_CONFIG), overrides or {}),
                 env).up()
        made.append(m)
        return m

    yield make
    for m in made:
        m.down()


def body(text, model="cached-chat", **extra):
    return dict({"model": model, "messages": [{"role": "user", "content": text}]}, **extra)


def prompt(label):
    return "%s %s" % (label, uuid.uuid4().hex[:12])


def upstream_calls(mesh):
    return sum(v for k, v in mesh.metrics("mock").items() if k.startswith("seekmesh_mock_requests_total"))


def wait_calls(mesh, want, timeout=5):
    deadline = time.time() + timeout
    while upstream_calls(mesh) < want and time.time() < deadline:
        time.sleep(0.02)
    return upstream_calls(mesh)


def content(data):
    return data["choices"][0]["message"]["content"]


def cache_metric(mesh, name):
    return mesh.metric("cache", name)


# --- hits -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["cached-chat", "cached-ws"])
def test_second_identical_request_is_a_hit(mesh, model):
    text = prompt("hit")
    calls = upstream_calls(mesh)
    status, headers, first = mesh.chat(body(text, model))
    assert status == 200 and headers["x-seekmesh-cache"] == "miss"
    status, headers, second = mesh.chat(body(text, model))
    assert status == 200 and headers["x-seekmesh-cache"] == "hit"
    assert content(second) == content(first) == echo(text)
    assert second["id"] != first["id"] and second["usage"] == first["usage"]
    assert second["choices"] == first["choices"] and second["model"] == first["model"]
    #  Key order, white space and user do not make another request
    reordered = json.dumps({"messages": [{"content": text, "role": "user"}], "user": "someone",
                            "model": model}, indent=3)
    status, headers, third = mesh.chat(reordered)
    assert headers["x-seekmesh-cache"] == "hit" and content(third) == echo(text)
    #  The stream of the same request: a hit too, shaped like DeepSeek's
    stream = mesh.stream(body(text, model))
    stream.read_all()
    assert stream.status == 200 and stream.headers["x-seekmesh-cache"] == "hit"
    assert stream.content() == echo(text)
    chunks = stream.chunks()
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == first["usage"]["completion_tokens"]
    assert "prompt_cache_hit_tokens" in chunks[-1]["usage"]
    assert stream.data_events()[-1] == "data: [DONE]"
    assert upstream_calls(mesh) == calls + 1


@pytest.mark.parametrize("model", ["cached-chat", "cached-ws"])
def test_stream_miss_is_kept_and_hits_stream_and_body(mesh, model):
    text = prompt("stream first")
    calls = upstream_calls(mesh)
    first = mesh.stream(body(text, model, mock={"tokens": 5}))
    first.read_all()
    assert first.headers["x-seekmesh-cache"] == "miss" and first.content() == echo(text, 5)
    again = mesh.stream(body(text, model, mock={"tokens": 5}))
    again.read_all()
    assert again.headers["x-seekmesh-cache"] == "hit" and again.content() == echo(text, 5)
    status, headers, whole = mesh.chat(body(text, model, mock={"tokens": 5}))
    assert headers["x-seekmesh-cache"] == "hit" and content(whole) == echo(text, 5)
    assert upstream_calls(mesh) == calls + 1


def test_reasoning_and_tool_calls_are_kept_whole(mesh):
    text = prompt("think")
    first = mesh.stream(body(text, "cached-chat", thinking={"type": "enabled"}))
    first.read_all()
    again = mesh.stream(body(text, "cached-chat", thinking={"type": "enabled"}))
    again.read_all()
    assert again.headers["x-seekmesh-cache"] == "hit"
    assert again.content("reasoning_content") == first.content("reasoning_content") != ""
    assert again.content() == first.content()
    tools = [{"type": "function", "function": {"name": "echo", "parameters": {"type": "object"}}}]
    status, _, called = mesh.chat(body(text, "cached-chat", tools=tools))
    status, headers, hit = mesh.chat(body(text, "cached-chat", tools=tools))
    assert headers["x-seekmesh-cache"] == "hit"
    assert hit["choices"][0]["message"]["tool_calls"] == called["choices"][0]["message"]["tool_calls"]
    assert hit["choices"][0]["finish_reason"] == "tool_calls"


def test_uncached_models_and_temperature_bypass(mesh):
    text = prompt("plain")
    calls = upstream_calls(mesh)
    for _ in range(2):
        status, headers, _ = mesh.chat(body(text, "deepseek-chat"))
        assert status == 200 and headers["x-seekmesh-cache"] == "bypass"
    #  Over the model's max_temperature (and without one: DeepSeek's 1.0)
    for temperature in (0.9, None):
        extra = {"temperature": temperature} if temperature is not None else {}
        for _ in range(2):
            status, headers, _ = mesh.chat(body(text, "cool-chat", **extra))
            assert headers["x-seekmesh-cache"] == "bypass"
    status, headers, _ = mesh.chat(body(text, "cool-chat", temperature=0.2))
    assert headers["x-seekmesh-cache"] == "miss"
    status, headers, _ = mesh.chat(body(text, "cool-chat", temperature=0.2))
    assert headers["x-seekmesh-cache"] == "hit"
    assert upstream_calls(mesh) == calls + 7
    #  Errors say it too
    status, headers, _ = mesh.chat(body(text, "no-such-model"))
    assert status == 404 and headers["x-seekmesh-cache"] == "bypass"


# --- coalescing -----------------------------------------------------------------------------------

SLOW = {"tokens": 30, "delay_ms": 30}


def test_100_identical_concurrent_streams_cost_one_upstream_call(mesh):
    text = prompt("herd")
    calls = upstream_calls(mesh)
    request = body(text, mock=SLOW)

    def one():
        s = mesh.stream(request, timeout=60)
        s.read_all(timeout=60)
        return s

    streams = parallel([one] * 100)
    assert upstream_calls(mesh) == calls + 1
    verdicts = [s.headers["x-seekmesh-cache"] for s in streams]
    assert verdicts.count("miss") == 1, verdicts
    assert set(verdicts) <= {"miss", "coalesced", "hit"}
    assert all(s.status == 200 and s.content() == echo(text, 30) for s in streams)
    #  Byte for byte: every follower got the leader's chunks
    leader = next(s for s in streams if s.headers["x-seekmesh-cache"] == "miss")
    for s in streams:
        if s.headers["x-seekmesh-cache"] == "coalesced":
            assert s.data_events() == leader.data_events()


def test_follower_joining_mid_stream_gets_the_whole_answer(mesh):
    text = prompt("late joiner")
    calls = upstream_calls(mesh)
    leader = mesh.stream(body(text, mock={"tokens": 20, "delay_ms": 50}))
    for _ in range(8):
        assert leader.next_event() is not None
    follower = mesh.stream(body(text, mock={"tokens": 20, "delay_ms": 50}))
    follower.read_all()
    leader.read_all()
    assert follower.headers["x-seekmesh-cache"] == "coalesced"
    assert follower.content() == leader.content() == echo(text, 20)
    assert follower.data_events() == leader.data_events()
    #  And a non-stream follower gets the whole body
    status, headers, data = mesh.chat(body(text, mock={"tokens": 20, "delay_ms": 50}))
    assert headers["x-seekmesh-cache"] == "hit" and content(data) == echo(text, 20)
    assert upstream_calls(mesh) == calls + 1


def test_non_stream_and_stream_requests_share_a_call(mesh):
    text = prompt("mixed")
    calls = upstream_calls(mesh)
    request = body(text, mock={"tokens": 10, "delay_ms": 50})
    leader = mesh.stream(request)
    assert leader.next_event() is not None
    results = parallel([lambda: mesh.chat(request)] * 3)
    leader.read_all()
    for status, headers, data in results:
        assert status == 200 and headers["x-seekmesh-cache"] == "coalesced"
        assert content(data) == echo(text, 10)
    assert upstream_calls(mesh) == calls + 1


def test_leader_leaving_does_not_cut_the_followers(mesh):
    text = prompt("leader leaves")
    calls = upstream_calls(mesh)
    aborted = mesh.metric("mock", "seekmesh_mock_streams_aborted_total")
    leader = mesh.stream(body(text, mock={"tokens": 20, "delay_ms": 50}))
    for _ in range(3):
        leader.next_event()
    follower = mesh.stream(body(text, mock={"tokens": 20, "delay_ms": 50}))
    assert follower.next_event() is not None
    leader.close()
    follower.read_all()
    assert follower.ended and follower.content() == echo(text, 20)
    assert upstream_calls(mesh) == calls + 1
    assert mesh.metric("mock", "seekmesh_mock_streams_aborted_total") == aborted
    #  The answer was kept all the same
    status, headers, data = mesh.chat(body(text, mock={"tokens": 20, "delay_ms": 50}))
    assert headers["x-seekmesh-cache"] == "hit" and content(data) == echo(text, 20)


def test_a_follower_leaving_cuts_nothing_and_the_last_reader_cancels(mesh):
    text = prompt("everyone leaves")
    aborted = mesh.metric("mock", "seekmesh_mock_streams_aborted_total")
    leader = mesh.stream(body(text, mock={"tokens": 40, "delay_ms": 50}))
    leader.next_event()
    follower = mesh.stream(body(text, mock={"tokens": 40, "delay_ms": 50}))
    follower.next_event()
    follower.close()
    for _ in range(5):
        assert leader.next_event() is not None
    assert mesh.metric("mock", "seekmesh_mock_streams_aborted_total") == aborted
    leader.close()
    #  Nobody reads it: the upstream call is cancelled (no token burn)
    mesh.wait_metric("mock", "seekmesh_mock_streams_aborted_total", lambda v: v == aborted + 1, timeout=3)


def test_leader_failure_reaches_every_follower(mesh):
    #  Before the first byte: the upstream never answers (first-byte timeout)
    text = prompt("stall")
    request = body(text, mock={"stall": "first"})
    leader = mesh.stream(request)
    time.sleep(0.3)
    followers = [mesh.stream(request) for _ in range(2)]
    plain = parallel([lambda: mesh.chat(request)] * 2)
    for s in [leader] + followers:
        s.read_all()
        assert s.status == 504, s.raw[:300]
    codes = {json.loads(s.body)["error"]["code"] for s in [leader] + followers}
    assert codes == {"upstream_timeout"}
    for status, headers, data in plain:
        assert status == 504 and data["error"]["code"] == "upstream_timeout"
        assert headers["x-seekmesh-cache"] == "coalesced"
    #  Mid-stream: the same error event ends every stream
    text = prompt("reset")
    request = body(text, mock={"tokens": 20, "delay_ms": 40, "reset_after": 10})
    leader = mesh.stream(request)
    leader.next_event()
    follower = mesh.stream(request)
    leader.read_all()
    follower.read_all()
    assert leader.data_events()[-1] == follower.data_events()[-1]
    assert '"error"' in follower.data_events()[-1]
    #  Nothing was kept
    status, headers, _ = mesh.chat(body(text, mock={"tokens": 20, "delay_ms": 40, "reset_after": 10}))
    assert headers["x-seekmesh-cache"] != "hit"


def test_followers_are_bounded(fresh_mesh):
    m = fresh_mesh(config(max_followers=2))
    text = prompt("bounded")
    calls = upstream_calls(m)
    request = body(text, mock={"tokens": 20, "delay_ms": 40})
    leader = m.stream(request)
    leader.next_event()
    others = [m.stream(request) for _ in range(4)]
    for s in [leader] + others:
        s.read_all()
        assert s.content() == echo(text, 20)
    verdicts = [s.headers["x-seekmesh-cache"] for s in others]
    assert verdicts.count("coalesced") == 2, verdicts
    assert upstream_calls(m) == calls + 3


# --- what is kept, for whom, how long ----------------------------------------------------------------

def test_tenants_do_not_share_unless_the_model_says_so(mesh):
    text = prompt("tenants")
    calls = upstream_calls(mesh)
    _, headers, _ = mesh.chat(body(text), key=ACME_KEY)
    assert headers["x-seekmesh-cache"] == "miss"
    _, headers, _ = mesh.chat(body(text), key=BETA_KEY)
    assert headers["x-seekmesh-cache"] == "miss"
    _, headers, _ = mesh.chat(body(text), key=BETA_KEY)
    assert headers["x-seekmesh-cache"] == "hit"
    _, headers, _ = mesh.chat(body(text, "shared-chat"), key=ACME_KEY)
    assert headers["x-seekmesh-cache"] == "miss"
    _, headers, _ = mesh.chat(body(text, "shared-chat"), key=BETA_KEY)
    assert headers["x-seekmesh-cache"] == "hit"
    assert upstream_calls(mesh) == calls + 3


def redis_ttl_ms(mesh):
    keys = mesh.redis_cli("--scan", "--pattern", "seekmesh:cache:*").split()
    return {k: int(mesh.redis_cli("PTTL", k)) for k in keys}


def test_no_store_and_no_cache(mesh):
    text = prompt("directives")
    calls = upstream_calls(mesh)
    _, headers, _ = mesh.chat(body(text), headers={"x-seekmesh-cache": "no-store"})
    assert headers["x-seekmesh-cache"] == "bypass"
    _, headers, _ = mesh.chat(body(text))
    assert headers["x-seekmesh-cache"] == "miss"            #  no-store kept nothing
    _, headers, _ = mesh.chat(body(text), headers={"x-seekmesh-cache": "no-store"})
    assert headers["x-seekmesh-cache"] == "bypass"          #  nor reads what is kept
    before = redis_ttl_ms(mesh)
    time.sleep(1.5)
    _, headers, data = mesh.chat(body(text), headers={"x-seekmesh-cache": "no-cache"})
    assert headers["x-seekmesh-cache"] == "miss" and content(data) == echo(text)
    after = redis_ttl_ms(mesh)
    #  The fresh answer replaced the kept one: its TTL starts again (the
    #  others' went down by the 1.5 s waited)
    renewed = [k for k in after if k in before and after[k] > before[k] - 500]
    assert len(renewed) == 1, (before, after)
    _, headers, _ = mesh.chat(body(text))
    assert headers["x-seekmesh-cache"] == "hit"
    assert upstream_calls(mesh) == calls + 4


def test_ttl_from_the_request_and_expiry(mesh):
    text = prompt("ttl")
    _, headers, _ = mesh.chat(body(text, "deepseek-chat"), headers={"x-seekmesh-cache": "ttl=1"})
    assert headers["x-seekmesh-cache"] == "miss"
    _, headers, _ = mesh.chat(body(text, "deepseek-chat"), headers={"x-seekmesh-cache": "ttl=1"})
    assert headers["x-seekmesh-cache"] == "hit"
    time.sleep(1.3)
    _, headers, _ = mesh.chat(body(text, "deepseek-chat"), headers={"x-seekmesh-cache": "ttl=1"})
    assert headers["x-seekmesh-cache"] == "miss"


# --- FAQ ------------------------------------------------------------------------------------------------

def ctl(mesh, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
    env["SEEKMESH_ADMIN_TOKEN"] = ADMIN_TOKEN
    host, port = mesh.admin_address("router")
    return subprocess.run([str(BIN / "seekmeshctl"), "--admin", "%s:%d" % (host, port), *args], env=env,
                          capture_output=True, text=True, timeout=10)


def audit_row(mesh, request_id, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for path in sorted(glob.glob(str(mesh.run_dir / "audit" / "audit-*.db"))):
            db = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
            db.row_factory = sqlite3.Row
            try:
                found = [dict(r) for r in db.execute("SELECT * FROM records WHERE id = ?", (request_id,))]
            except sqlite3.OperationalError:
                found = []
            finally:
                db.close()
            if found:
                return found[0]
        time.sleep(0.05)
    raise AssertionError("no audit record for %s" % request_id)


def test_faq_entries_of_each_kind_through_seekmeshctl(mesh):
    tag = uuid.uuid4().hex[:8]
    added = {}
    for kind, args in (("exact", ["--exact", "What are your opening hours %s?" % tag]),
                       ("keywords", ["--keyword", "refund", "--keyword", "order%s" % tag]),
                       ("regex", ["--regex", "^(how|where) (do|can) i reset my %s" % tag])):
        result = ctl(mesh, "faq", "add", "--tenant", "acme", *args, "--answer", "%s answer %s" % (kind, tag))
        assert result.returncode == 0, result.stderr
        added[kind] = result.stdout.split("id: ")[1].strip()
    listed = ctl(mesh, "faq", "list", "--tenant", "acme")
    assert all(added[k] in listed.stdout for k in added), listed.stdout
    got = json.loads(ctl(mesh, "--json", "faq", "get", added["regex"]).stdout)
    assert got["regex"].startswith("^(how|where)") and got["tenant"] == "acme"
    tested = ctl(mesh, "faq", "test", "what are your OPENING hours %s" % tag, "--tenant", "acme")
    assert added["exact"] in tested.stdout and "exact" in tested.stdout
    assert "no FAQ entry" in ctl(mesh, "faq", "test", "hello", "--tenant", "acme").stdout
    assert ctl(mesh, "faq", "add", "--tenant", "acme", "--regex", "(", "--answer", "x").returncode == 1
    mesh.wait_metric("cache", "seekmesh_cache_faq_entries", lambda v: v >= 3)

    calls = upstream_calls(mesh)
    questions = {"exact": "  what are your opening HOURS %s " % tag,
                 "keywords": "I want a REFUND for order%s, please." % tag,
                 "regex": "How can I reset my %s password?" % tag}
    for kind, question in questions.items():
        status, headers, data = mesh.chat(body(question, "deepseek-chat"), key=ACME_KEY)
        assert status == 200 and headers["x-seekmesh-cache"] == "faq", (kind, headers)
        assert content(data) == "%s answer %s" % (kind, tag)
        stream = mesh.stream(body(question, "deepseek-chat"), key=ACME_KEY)
        stream.read_all()
        assert stream.headers["x-seekmesh-cache"] == "faq" and stream.content() == "%s answer %s" % (kind, tag)
        assert stream.data_events()[-1] == "data: [DONE]"
        record = audit_row(mesh, headers["x-request-id"])
        assert record["outcome"] == "faq" and record["cache_hit"] == 1
        assert record["endpoint"] == "cache:faq/%s" % added[kind]
    assert upstream_calls(mesh) == calls
    #  Another tenant's request is not answered from acme's entries
    _, headers, _ = mesh.chat(body(questions["exact"], "deepseek-chat"), key=BETA_KEY)
    assert headers["x-seekmesh-cache"] == "bypass"
    assert upstream_calls(mesh) == calls + 1
    #  Removed: the model answers again
    for kind in added:
        assert ctl(mesh, "faq", "remove", added[kind]).returncode == 0
    mesh.wait_metric("cache", "seekmesh_cache_faq_entries", lambda v: v == 0)
    _, headers, data = mesh.chat(body(questions["regex"], "deepseek-chat"), key=ACME_KEY)
    assert headers["x-seekmesh-cache"] == "bypass" and content(data) == echo(questions["regex"])
    assert mesh.metric("cache", 'seekmesh_cache_faq_matches_total{kind="regex"}') >= 2


# --- quotas, audit, metrics -----------------------------------------------------------------------------

def test_hits_count_against_requests_not_tokens(mesh):
    text = prompt("quota")
    statuses = [mesh.chat(body(text), key=LIMITED_KEY)[0] for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    #  Each request reserves max_tokens (3000) of 7000 tokens a minute: two
    #  at once fit, three do not.  A hit gives them back (settled a moment
    #  after its answer, like the miss's), so ten in a row all pass.
    text = prompt("tokens")
    results = [mesh.chat(body(text, max_tokens=3000), key=TOKENS_KEY)]
    time.sleep(0.2)
    results += [mesh.chat(body(text, max_tokens=3000), key=TOKENS_KEY) for _ in range(9)]
    assert [r[0] for r in results] == [200] * 10
    assert [r[1]["x-seekmesh-cache"] for r in results] == ["miss"] + ["hit"] * 9


def test_audit_records_of_cache_answers(mesh):
    text = prompt("audited")
    _, miss_headers, _ = mesh.chat(body(text))
    _, hit_headers, _ = mesh.chat(body(text))
    miss = audit_row(mesh, miss_headers["x-request-id"])
    hit = audit_row(mesh, hit_headers["x-request-id"])
    assert miss["cache_hit"] == 0 and miss["endpoint"].startswith("http://")
    assert hit["cache_hit"] == 1 and hit["endpoint"] == "cache:hit" and hit["outcome"] == "ok"
    assert hit["completion_tokens"] == miss["completion_tokens"] and hit["status"] == 200
    #  A follower's record names its leader's request id
    text = prompt("audited follower")
    leader = mesh.stream(body(text, mock={"tokens": 10, "delay_ms": 50}))
    leader.next_event()
    follower = mesh.stream(body(text, mock={"tokens": 10, "delay_ms": 50}))
    follower.read_all()
    leader.read_all()
    record = audit_row(mesh, follower.headers["x-request-id"])
    assert record["cache_hit"] == 1
    assert record["endpoint"] == "cache:coalesced/%s" % leader.headers["x-request-id"]
    assert audit_row(mesh, leader.headers["x-request-id"])["cache_hit"] == 0


def test_cache_metrics(mesh):
    text = prompt("metrics")
    for _ in range(3):
        mesh.chat(body(text))
    m = mesh.metrics("cache")
    assert m['seekmesh_cache_lookups_total{result="hit"}'] >= 2
    assert m['seekmesh_cache_lookups_total{result="miss"}'] >= 1
    assert m["seekmesh_cache_bytes"] > 0 and m["seekmesh_cache_entries"] >= 1
    assert m['seekmesh_cache_hits_total{level="l1"}'] >= 2
    assert m["seekmesh_cache_lookup_seconds_count"] >= 3
    assert "seekmesh_cache_evictions_total" in m and "seekmesh_cache_coalesced_total" in m
    assert mesh.metric("router", "seekmesh_cache_up") == 1
    assert mesh.metric("router", 'seekmesh_router_cache_verdicts_total{verdict="hit"}') >= 2


# --- failures -----------------------------------------------------------------------------------------

def test_cache_frozen_or_away_costs_at_most_the_bound(fresh_mesh):
    m = fresh_mesh(config())
    text = prompt("frozen")
    m.chat(body(text))
    pid = m.pid("cache-0")
    os.kill(pid, signal.SIGSTOP)
    try:
        times = []
        for i in range(6):
            started = time.time()
            status, headers, data = m.chat(body(text))
            times.append(time.time() - started)
            assert status == 200 and headers["x-seekmesh-cache"] == "bypass" and content(data) == echo(text)
        #  Each waited for the bound (20 ms) at most; after router.cache.failures
        #  the cache is not asked at all
        assert max(times) < 0.5, times
        m.wait_metric("router", "seekmesh_cache_up", lambda v: v == 0)
        assert m.metric("router", 'seekmesh_router_cache_unanswered_total{why="timeout"}') >= 1
    finally:
        os.kill(pid, signal.SIGCONT)
    m.wait_metric("router", "seekmesh_cache_up", lambda v: v == 1, timeout=5)
    deadline = time.time() + 5
    while m.chat(body(text))[1]["x-seekmesh-cache"] != "hit":
        assert time.time() < deadline
        time.sleep(0.05)
    #  Away (killed): no wait at all, no error
    m.kill("cache-0")
    for _ in range(3):
        status, headers, _ = m.chat(body(prompt("away")))
        assert status == 200 and headers["x-seekmesh-cache"] in ("bypass", "miss")
    m.wait_healthy("cache", timeout=10)         #  restarted by its supervisor


def test_restart_and_redis_kill_under_load_fail_nothing(fresh_mesh):
    m = fresh_mesh(config())
    stop = threading.Event()
    failures, done = [], [0]
    shared = [prompt("shared %d" % i) for i in range(5)]

    def worker(n):
        i = 0
        while not stop.is_set():
            i += 1
            text = shared[i % len(shared)] if i % 3 else prompt("own %d" % n)
            request = body(text, mock={"tokens": 4, "delay_ms": 20})
            try:
                if i % 2:
                    s = m.stream(request, timeout=20)
                    s.read_all(timeout=20)
                    ok = s.status == 200 and s.ended and s.content() == echo(text, 4)
                    what = (s.status, s.headers.get("x-seekmesh-cache"), s.body[-300:])
                else:
                    status, headers, data = m.chat(request, timeout=20)
                    ok = status == 200 and content(data) == echo(text, 4)
                    what = (status, headers.get("x-seekmesh-cache"), data)
            except Exception as e:  # noqa: B902 - every failure is counted
                ok, what = False, repr(e)
            if not ok:
                failures.append(what)
            done[0] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        m.mesh("restart", "cache-0")
        time.sleep(1.5)
        m.kill("redis-0")                   #  the supervisor starts it again
        time.sleep(2.5)
        m.mesh("restart", "cache-0")
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert done[0] > 50
    assert not failures, failures[:5]
    assert m.metric("cache", 'seekmesh_cache_lookups_total{result="hit"}') + \
        m.metric("cache", 'seekmesh_cache_lookups_total{result="coalesced"}') > 0


def test_answers_in_redis_are_sealed_and_outlive_the_process(fresh_mesh, tmp_path):
    key_file = tmp_path / "cache.keys"
    key_file.write_text("k1 %s\n" % ("ab" * 32))
    key_file.chmod(0o600)
    m = fresh_mesh(config(key_file=str(key_file), l1_max_bytes=20000))
    text = prompt("sealed secret")
    m.chat(body(text))
    values = [subprocess.run(["redis-cli", "-p", str(m.redis_port()), "GET", k], capture_output=True,
                             timeout=5).stdout
              for k in m.redis_cli("--scan", "--pattern", "seekmesh:cache:*").split()]
    assert values and all(v.startswith(b"SMS1") and text.encode() not in v and b"Echo" not in v
                          for v in values)
    m.mesh("restart", "cache-0")
    m.wait_ready("cache")
    m.wait_metric("router", "seekmesh_cache_up", lambda v: v == 1)
    #  A fresh process may miss the router's 20 ms on its first lookups (a
    #  bypass, which keeps nothing): the answer comes from Redis once it
    #  answers in time
    deadline = time.time() + 10
    while True:
        _, headers, data = m.chat(body(text))
        if headers["x-seekmesh-cache"] != "bypass" or time.time() > deadline:
            break
        time.sleep(0.1)
    assert headers["x-seekmesh-cache"] == "hit" and content(data) == echo(text)
    assert m.metric("cache", 'seekmesh_cache_hits_total{level="l2"}') == 1
    #  L1 keeps under its bound: older answers are evicted (and still in Redis)
    for i in range(40):
        m.chat(body(prompt("filler %d" % i) + " x" * 200))
    assert m.metric("cache", "seekmesh_cache_bytes") <= 20000
    assert m.metric("cache", "seekmesh_cache_evictions_total") > 0
    _, headers, _ = m.chat(body(text))
    assert headers["x-seekmesh-cache"] == "hit"
