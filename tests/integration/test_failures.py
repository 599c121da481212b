"""Failure scenarios of RELIABILITY.md, with real processes and real faults.

 1  connector_killed_mid_stream
 2  connector_killed_before_first_byte_is_retried
 4  ingress_killed_cancels_upstream_calls
 6  upstream_reset_mid_stream (HTTP reset, WebSocket closed without a close frame)
 7  upstream_stall_before_first_byte / between_chunks
11  client_disconnect_aborts_upstream_call
"""
import json
import re
import socket
import time

from meshlib import echo, parallel
from test_audit import record

TWO_CONNECTORS = {"mesh": {"instances": {"connector": 2}}}


def user(text, model="deepseek-chat", **extra):
    return dict({"model": model, "messages": [{"role": "user", "content": text}]}, **extra)


def test_connector_killed_mid_stream(make_mesh):
    mesh = make_mesh(TWO_CONNECTORS)
    mesh.wait_metric("router", "seekmesh_router_connectors", lambda v: v == 2)
    tokens, delay = 150, 20            # 3 s of stream
    streams = [mesh.stream(user("long %d" % i, mock={"tokens": tokens, "delay_ms": delay}))
               for i in range(6)]
    for s in streams:                  # every stream is flowing
        assert s.next_event() is not None
        assert s.next_event() is not None
    held = mesh.metric("connector", "seekmesh_connector_inflight", instance=0)
    assert 0 < held < 6, "streams are spread over both connectors"
    lost_before = mesh.metric("router", "seekmesh_router_connectors_lost_total")
    killed_at = time.time()
    killed = mesh.kill("connector-0")
    results = parallel([lambda s=s: s.read_all(timeout=10) for s in streams])
    assert results
    failed = [s for s in streams if any('"error"' in e for e in s.data_events())]
    survived = [s for s in streams if s not in failed]
    assert len(failed) == held
    for s in failed:
        errors = [e for e in s.data_events() if '"error"' in e]
        assert len(errors) == 1, "exactly one error event"
        error = json.loads(errors[0][6:])["error"]
        assert error["code"] == "connector_lost" and error["message"]
        assert s.data_events()[-1] == errors[0], "the error event is the last"
        assert s.ended and not s.reset, "and the response ends cleanly (its last chunk, no reset)"
        last_time = s.events[-1][0]
        assert last_time - killed_at < 2.0
        assert "data: [DONE]" not in s.data_events()
        # the audit: connector_lost, with the tokens delivered so far (one a
        # content chunk, as the mock and DeepSeek stream them)
        delivered = sum(1 for c in s.chunks() if c.get("choices") and c["choices"][0]["delta"].get("content"))
        r = record(mesh, s.headers["x-request-id"])
        assert r["outcome"] == "connector_lost" and 1 <= delivered < tokens
        assert r["completion_tokens"] == delivered, (r["completion_tokens"], delivered)
    for s in survived:
        assert s.content() == echo(s.chunks() and "long %d" % streams.index(s), tokens)
        assert s.data_events()[-1] == "data: [DONE]"
    # the supervisor restarts the connector; the router saw it go and the new
    # one join, all within 3 s of the kill
    deadline = killed_at + 3
    while True:
        try:
            restarted = mesh.pid("connector-0") != killed
        except (AssertionError, ValueError):
            restarted = False
        if (restarted and mesh.metric("router", "seekmesh_router_connectors_lost_total") > lost_before
                and mesh.metric("router", "seekmesh_router_connectors") == 2
                and mesh.metric("connector", "seekmesh_connector_inflight", instance=0) == 0):
            break
        assert time.time() < deadline, "the restarted connector did not join within 3 s of the kill"
        time.sleep(0.02)
    served_before = mesh.metric("connector", 'seekmesh_connector_requests_total{outcome="ok"}', instance=0)
    for i in range(4):
        status, _, body = mesh.chat(user("after restart %d" % i))
        assert status == 200 and body["choices"][0]["message"]["content"] == "Echo: after restart %d" % i
    assert mesh.metric("connector", 'seekmesh_connector_requests_total{outcome="ok"}', instance=0) > served_before
    for s in streams:
        s.close()


def test_connector_killed_before_first_byte_is_retried(make_mesh):
    mesh = make_mesh(TWO_CONNECTORS)
    mesh.wait_metric("router", "seekmesh_router_connectors", lambda v: v == 2)
    # a non-stream answer that the mock holds back for 1 s (under the first-byte
    # timeout): nothing reaches
    # the client before then
    body = user("retry me", mock={"tokens": 20, "delay_ms": 50})
    result = {}

    def call():
        result["response"] = mesh.chat(body, timeout=20)

    import threading
    thread = threading.Thread(target=call)
    thread.start()
    holder = None
    deadline = time.time() + 3
    while holder is None and time.time() < deadline:
        for i in range(2):
            if mesh.metric("connector", "seekmesh_connector_inflight", instance=i) == 1:
                holder = i
        time.sleep(0.02)
    assert holder is not None
    mesh.kill("connector-%d" % holder)
    thread.join(20)
    status, headers, reply = result["response"]
    assert status == 200, reply
    assert reply["choices"][0]["message"]["content"] == echo("retry me", 20)
    assert mesh.metric("ingress", "seekmesh_ingress_retries_total") == 1
    assert "retrying (attempt 2)" in mesh.logs("ingress-0")
    r = record(mesh, headers["x-request-id"])
    assert r["attempts"] == 2 and r["outcome"] == "ok" and r["completion_tokens"] == 20


def test_ingress_killed_cancels_upstream_calls(make_mesh):
    mesh = make_mesh()
    streams = [mesh.stream(user("orphan %d" % i, mock={"tokens": 500, "delay_ms": 20})) for i in range(3)]
    for s in streams:
        assert s.next_event() is not None
    aborted = mesh.metric("mock", "seekmesh_mock_streams_aborted_total")
    killed_at = time.time()
    mesh.kill("ingress-0")
    mesh.wait_metric("mock", "seekmesh_mock_streams_aborted_total", lambda v: v >= aborted + 3, timeout=5)
    assert time.time() - killed_at < 5
    mesh.wait_metric("connector", "seekmesh_connector_inflight", lambda v: v == 0, timeout=2)
    # the restarted ingress serves within 2 s of the kill's restart
    deadline = time.time() + 5
    while True:
        try:
            status, _, body = mesh.chat(user("back"), timeout=2)
            if status == 200:
                break
        except OSError:
            pass
        assert time.time() < deadline, "the ingress did not come back"
        time.sleep(0.05)
    assert time.time() - killed_at < 3
    for s in streams:
        s.close()


def test_upstream_reset_mid_stream(mesh):
    for model in ("deepseek-chat", "deepseek-chat-ws"):
        failed = mesh.metric("connector", 'seekmesh_connector_requests_total{outcome="failed"}')
        stream = mesh.stream(user("cut", model, mock={"tokens": 20, "delay_ms": 50, "reset_after": 3}))
        stream.read_all(timeout=5)
        errors = [e for e in stream.data_events() if '"error"' in e]
        assert len(errors) == 1, stream.events
        assert json.loads(errors[0][6:])["error"]["code"] == "upstream_disconnected"
        # the error follows the reset within a second
        last_token = max(t for t, e in stream.events if '"content"' in e)
        assert stream.events[-1][0] - last_token < 1.0
        assert mesh.metric("connector", 'seekmesh_connector_requests_total{outcome="failed"}') == failed + 1
        stream.close()


def test_upstream_stall_before_first_byte(mesh):
    timeout_s = mesh.config["connector"]["first_byte_timeout_ms"] / 1000
    started = time.time()
    status, headers, body = mesh.chat(user("stall", mock={"stall": "first"}))
    elapsed = time.time() - started
    assert status == 504, body
    assert body["error"]["code"] == "upstream_timeout"
    assert timeout_s <= elapsed < timeout_s + 1.0
    # the stream form: no bytes before the timeout either, so a 504 too
    stream = mesh.stream(user("stall", mock={"stall": "first"}))
    assert stream.read_head() == 504
    stream.close()
    mesh.wait_metric("connector", "seekmesh_connector_inflight", lambda v: v == 0)
    mesh.wait_metric("router", "seekmesh_router_inflight", lambda v: v == 0)


def test_upstream_stall_between_chunks(mesh):
    idle_s = mesh.config["connector"]["idle_timeout_ms"] / 1000
    stream = mesh.stream(user("stall later", mock={"tokens": 10, "stall": "after", "stall_after": 2}))
    stream.read_all(timeout=idle_s + 3)
    errors = [e for e in stream.data_events() if '"error"' in e]
    assert len(errors) == 1 and json.loads(errors[0][6:])["error"]["code"] == "upstream_stalled"
    times = [t for t, e in stream.events]
    assert idle_s * 0.9 <= times[-1] - times[-2] < idle_s + 1.0
    stream.close()
    mesh.wait_metric("connector", "seekmesh_connector_inflight", lambda v: v == 0)
    mesh.wait_metric("router", "seekmesh_router_inflight", lambda v: v == 0)


def test_client_disconnect_aborts_upstream_call(mesh):
    for model in ("deepseek-chat", "deepseek-chat-ws"):
        aborted = mesh.metric("mock", "seekmesh_mock_streams_aborted_total")
        gone = mesh.metric("ingress", "seekmesh_ingress_client_gone_total")
        stream = mesh.stream(user("leave", model, mock={"tokens": 500, "delay_ms": 20}))
        for _ in range(3):
            assert stream.next_event() is not None
        closed_at = time.time()
        stream.sock.shutdown(socket.SHUT_RDWR)
        stream.close()
        mesh.wait_metric("mock", "seekmesh_mock_streams_aborted_total", lambda v: v == aborted + 1, timeout=1.5)
        assert time.time() - closed_at < 1.0
        assert mesh.metric("ingress", "seekmesh_ingress_client_gone_total") == gone + 1
        mesh.wait_metric("connector", "seekmesh_connector_inflight", lambda v: v == 0)
        mesh.wait_metric("router", "seekmesh_router_inflight", lambda v: v == 0)


def test_sigterm_drains_in_flight_work(make_mesh):
    """DESIGN.md: SIGTERM drains — the stream in flight finishes, then exit 0."""
    mesh = make_mesh()
    for service in ("connector", "router", "ingress"):
        stream = mesh.stream(user("drain %s" % service, mock={"tokens": 20, "delay_ms": 30}))
        assert stream.next_event() is not None
        mesh.kill("%s-0" % service, sig=15)
        stream.read_all(timeout=10)
        assert stream.content() == echo("drain %s" % service, 20), service
        assert stream.data_events()[-1] == "data: [DONE]"
        stream.close()
        log = (mesh.run_dir / "logs" / "supervisor.log").read_text()
        deadline = time.time() + 5
        while not re.search(r"exit %s-0 pid=\d+ exited with status 0" % service, log):
            assert time.time() < deadline, log[-2000:]
            time.sleep(0.05)
            log = (mesh.run_dir / "logs" / "supervisor.log").read_text()
        mesh.wait_healthy(service)
        mesh.wait_metric("router", "seekmesh_router_connectors", lambda v: v == 1, timeout=5)
        # and the ingress has its router again (a restarted router's CURVE
        # handshake may take a moment on a loaded machine)
        mesh.wait_ready("ingress", timeout=10)


def test_frozen_connector_is_lost_by_heartbeat(make_mesh):
    """A frozen process keeps its TCP connections open: only the missed
    heartbeats (router.heartbeat_ms x heartbeat_liveness) reveal it."""
    mesh = make_mesh(TWO_CONNECTORS)
    mesh.wait_metric("router", "seekmesh_router_connectors", lambda v: v == 2)
    import threading
    result = {}
    body = user("frozen", mock={"tokens": 10, "delay_ms": 50})
    thread = threading.Thread(target=lambda: result.update(response=mesh.chat(body, timeout=20)))
    thread.start()
    holder = None
    deadline = time.time() + 5
    while holder is None and time.time() < deadline and thread.is_alive():
        for i in range(2):
            if mesh.metric("connector", "seekmesh_connector_inflight", instance=i) == 1:
                holder = i
        time.sleep(0.01)
    assert holder is not None, ("no connector held the request", result, mesh.logs())
    frozen_at = time.time()
    pid = mesh.kill("connector-%d" % holder, sig=19)        # SIGSTOP
    try:
        thread.join(20)
        status, _, reply = result["response"]
        assert status == 200, reply
        assert reply["choices"][0]["message"]["content"] == echo("frozen", 10)
        router = mesh.config["router"]
        detect_s = router["heartbeat_ms"] * router["heartbeat_liveness"] / 1000
        assert time.time() - frozen_at < detect_s + 1.5
        assert mesh.metric("router", "seekmesh_router_connectors_lost_total") >= 1
        assert mesh.metric("ingress", "seekmesh_ingress_retries_total") == 1
    finally:
        import os
        os.kill(pid, 18)                                      # SIGCONT
