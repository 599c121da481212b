"""Quota leases: a busy key is admitted from quota its router took from Redis
ahead of the requests (router_lease.c), against a real Redis.

- two routers leasing a busy key's requests per minute never admit more
  than the limit (and its refill while the load runs), and stop leasing when
  it is nearly spent
- a budget leased ahead is exact once the traffic stops: every estimate is
  settled and what was not used is given back, so Redis's counter holds the
  real usage
- a busy model's concurrency is leased as a block of slots, given back when
  the traffic stops; a block counts for every router's per-request check
  until it expires

The load comes from mesh-loadgen (the benchmark's client, open loop), fast
enough for the routers to lease; the exact-count tests of test_quota.py run
unchanged with leases on (their keys are too small or too quiet to lease).
"""
import json
import subprocess
import time

from meshlib import BIN, CHAT, KEY

BUSY = "sk-busy-key-0001"


def keys(*extra):
    return {"keys": [{"id": "dev", "key": KEY, "tenant": "dev"}, *extra]}


def load(mesh, tmp_path, key, rate, seconds, body=None):
    """Open-loop load: rate requests/s for seconds; mesh-loadgen's result."""
    path = tmp_path / "body.json"
    path.write_text(json.dumps(body or {"model": "deepseek-chat",
                                        "messages": [{"role": "user", "content": "busy"}]}))
    result = subprocess.run([str(BIN / "mesh-loadgen"), "rate", "--url",
                             "http://%s:%d%s" % (mesh.host, mesh.port, CHAT), "--body", str(path),
                             "--header", "Authorization: Bearer " + key, "--rate", str(rate),
                             "--duration", str(seconds), "--connections", "16", "--json"],
                            capture_output=True, text=True, timeout=seconds + 60)
    assert result.returncode == 0, result.stderr
    return json.loads([l for l in result.stdout.splitlines() if l.startswith("{")][-1])


def total(mesh, name, instances=1):
    return sum(value for i in range(instances) for metric, value in mesh.metrics("router", i).items()
               if metric == name or metric.startswith(name + "{"))


def test_leased_rate_never_exceeds_the_limit(make_mesh, tmp_path):
    mesh = make_mesh(dict({"mesh": {"instances": {"router": 2}}},
                          **keys({"id": "busy", "key": BUSY, "tenant": "t", "rpm": 1000})))
    started = time.time()
    out = load(mesh, tmp_path, BUSY, 400, 3)
    elapsed = time.time() - started
    # leases did the work: most admissions never asked Redis
    leased = total(mesh, "seekmesh_router_quota_leased_total", 2)
    assert leased > 300, leased
    # never more than the limit, plus what the minute refilled meanwhile
    assert out["ok"] <= 1000 + elapsed * 1000 / 60, out
    # and not much less: near the limit requests are checked one by one; at
    # most each router's last lease (5 % of the limit) goes unused
    assert out["ok"] >= 900, out
    refused = total(mesh, 'seekmesh_router_refused_total{key="busy",model="deepseek-chat",reason="rate_limit"}', 2)
    assert out["status_errors"] == refused == out["sent"] - out["ok"], (out, refused)
    # Redis refused leases once the key was nearly spent
    assert total(mesh, "seekmesh_router_quota_lease_refused_total", 2) > 0


def test_leased_budget_is_exact_once_returned(make_mesh, tmp_path):
    mesh = make_mesh(keys({"id": "busy", "key": BUSY, "tenant": "t", "budget": 10 ** 9,
                           "budget_period": "day"}))
    status, _, body = mesh.chat({"model": "deepseek-chat", "messages": [{"role": "user", "content": "busy"}]},
                                key=BUSY)
    assert status == 200
    per_request = body["usage"]["total_tokens"]
    out = load(mesh, tmp_path, BUSY, 300, 2)
    assert out["errors"] == 0 and out["ok"] > 0, out
    assert total(mesh, "seekmesh_router_quota_leased_total") > 100
    # In flight, the counter holds leases and estimates (prompt + 4,096
    # output tokens each); once the traffic stops, what was leased and not
    # used goes back: the counter is the usage of every request, exactly
    expected = per_request * (out["ok"] + 1)
    deadline = time.time() + 10
    while True:
        (counter,) = mesh.redis_cli("KEYS", "seekmesh:b:{busy}:*").split()
        used = int(mesh.redis_cli("GET", counter))
        if used == expected:
            break
        assert time.time() < deadline, "budget counter %d, usage %d" % (used, expected)
        time.sleep(0.1)


def test_model_concurrency_leased_as_a_block(make_mesh, tmp_path):
    mesh = make_mesh()
    model = dict(next(m for m in mesh.config["models"] if m["name"] == "deepseek-chat"))
    model.update(name="wide", max_concurrency=1000, aliases=[])
    assert mesh.admin_call("PUT", "/admin/models/wide", model)[0] == 201
    body = {"model": "wide", "messages": [{"role": "user", "content": "busy"}]}
    out = load(mesh, tmp_path, KEY, 300, 2, body)
    assert out["errors"] == 0, out
    assert total(mesh, "seekmesh_router_quota_leased_total") > 100
    # the block is given back when the traffic stops: no slot stays taken
    deadline = time.time() + 10
    while mesh.redis_cli("HLEN", "seekmesh:cb:{wide}") != "0" or mesh.redis_cli("ZCARD", "seekmesh:c:{wide}") != "0":
        blocks = mesh.redis_cli("HGETALL", "seekmesh:cb:{wide}").split()
        assert all(b.startswith("r0-") or b.isdigit() for b in blocks), blocks
        assert time.time() < deadline, blocks
        time.sleep(0.1)


def test_blocks_count_until_they_expire(make_mesh):
    """A router's block of slots holds them against every other request: the
    per-request script counts it, and stops counting it once it expires (a
    router that died without giving it back)."""
    mesh = make_mesh()
    model = dict(next(m for m in mesh.config["models"] if m["name"] == "deepseek-chat"))
    model.update(name="pair", max_concurrency=2, aliases=[])
    assert mesh.admin_call("PUT", "/admin/models/pair", model)[0] == 201
    body = {"model": "pair", "messages": [{"role": "user", "content": "room?"}]}
    assert mesh.chat(body)[0] == 200
    # another router's block of both slots, for another minute
    expiry = int(mesh.redis_cli("TIME").split()[0]) * 1000 + 60000
    mesh.redis_cli("HSET", "seekmesh:cb:{pair}", "r9-1-elsewhere", "2")
    mesh.redis_cli("ZADD", "seekmesh:cx:{pair}", str(expiry), "r9-1-elsewhere")
    status, _, answer = mesh.chat(body)
    assert status == 429 and answer["error"]["code"] == "concurrency_limit_exceeded", answer
    # expired: its slots are free again, and it is cleaned away
    mesh.redis_cli("ZADD", "seekmesh:cx:{pair}", "1", "r9-1-elsewhere")
    assert mesh.chat(body)[0] == 200
    assert mesh.redis_cli("HLEN", "seekmesh:cb:{pair}") == "0"
