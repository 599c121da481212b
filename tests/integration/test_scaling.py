"""What says the mesh needs more of itself (DESIGN.md, "Waiting, and the
signals to scale on"): requests waiting for connector credit, counted in
seekmesh_router_queue_depth{model} and served in turn (or refused after
router.queue_timeout_ms); the scale-out hint seekmesh_router_scale_out
{model} when server errors pass 5 % for 5 requests in a row, and clear again."""
import threading
import time

from meshlib import echo, parallel

QUEUE = 'seekmesh_router_queue_depth{model="deepseek-chat"}'
HINT = 'seekmesh_router_scale_out{model="deepseek-chat"}'
RATIO = 'seekmesh_router_error_ratio{model="deepseek-chat"}'


def user(text, **extra):
    return dict({"model": "deepseek-chat", "messages": [{"role": "user", "content": text}]}, **extra)


def test_requests_wait_for_connector_credit_and_are_counted(make_mesh):
    mesh = make_mesh({"connector": {"capacity": 2}, "router": {"queue_timeout_ms": 10000}})
    slow = {"tokens": 10, "delay_ms": 100}      # 1 s each
    deepest = []
    done = threading.Event()

    def watch():
        while not done.is_set():
            deepest.append(mesh.metric("router", QUEUE))
            time.sleep(0.05)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        results = parallel([lambda i=i: mesh.chat(user("wait %d" % i, mock=slow), timeout=20)
                            for i in range(5)])
    finally:
        done.set()
        watcher.join()
    for i, (status, _, body) in enumerate(results):
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] == echo("wait %d" % i, 10)
    # two ran at once, three waited for their credit, in turn
    assert max(deepest) == 3, deepest
    assert mesh.metric("router", QUEUE) == 0


def test_a_request_waits_no_longer_than_the_queue_timeout(make_mesh):
    mesh = make_mesh({"connector": {"capacity": 1}, "router": {"queue_timeout_ms": 500}})
    holder = threading.Thread(target=lambda: mesh.chat(user("hold", mock={"tokens": 30, "delay_ms": 100}),
                                                       timeout=20))
    holder.start()
    mesh.wait_metric("connector", "seekmesh_connector_inflight", lambda v: v == 1)
    started = time.time()
    status, headers, body = mesh.chat(user("no room"))
    waited = time.time() - started
    assert status == 503 and body["error"]["code"] == "no_capacity", body
    assert "retry-after" in headers
    assert 0.45 < waited < 2.0, waited
    holder.join(20)
    assert mesh.metric("router", QUEUE) == 0


def test_scale_out_hint_follows_the_error_rate(make_mesh):
    # (the breaker and the ejection, which would answer for the upstream
    # once it has failed a few times, kept out of the way)
    mesh = make_mesh({"router": {"scale": {"window": 20, "error_percent": 5, "consecutive": 5},
                                 "breaker": {"consecutive_failures": 1000},
                                 "outlier": {"consecutive_failures": 1000}}})
    for i in range(10):
        assert mesh.chat(user("fine %d" % i))[0] == 200
    # a success counts when its DONE reaches the router (connectors send
    # them in batches, connector.done_flush_ms)
    mesh.wait_metric("router", "seekmesh_router_done_total", lambda v: v == 10)
    assert mesh.metric("router", HINT) == 0 and mesh.metric("router", RATIO) == 0
    # the upstream fails everything: the model's requests end in 5xx
    host, port = mesh.admin_address("mock")
    import http.client
    import json
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("PUT", "/mock/fault", body=json.dumps({"mode": "status", "status": 503}))
    assert conn.getresponse().status == 200
    conn.close()
    statuses = []
    for i in range(6):
        statuses.append(mesh.chat(user("failing %d" % i))[0])
        if i < 4:
            assert mesh.metric("router", HINT) == 0, "not before 5 requests in a row over 5 %"
    assert all(s >= 500 for s in statuses), statuses
    assert mesh.metric("router", HINT) == 1
    assert mesh.metric("router", RATIO) > 0.05
    # fixed: once the errors have left the window and 5 more requests are fine
    conn = http.client.HTTPConnection(host, port, timeout=5)
    conn.request("DELETE", "/mock/fault")
    conn.getresponse().read()
    conn.close()
    for i in range(25):
        assert mesh.chat(user("fine again %d" % i))[0] == 200
    mesh.wait_metric("router", "seekmesh_router_done_total", lambda v: v == 35)
    assert mesh.metric("router", HINT) == 0 and mesh.metric("router", RATIO) == 0
    assert "scale out" in mesh.logs("router-0")
