"""Chat requests through the whole mesh: ingress, router, connector, mock.

Non-stream and stream, over both upstream kinds (HTTP SSE and WebSocket),
with the wire format checked byte by byte against COMPAT.md, errors in the
OpenAI envelope, and 40 concurrent mixed requests with exact content."""
import json
import socket
import time

from meshlib import CHAT, KEY, echo, parallel

MODELS = ("deepseek-chat", "deepseek-chat-ws")


def user(text, model="deepseek-chat", **extra):
    return dict({"model": model, "messages": [{"role": "user", "content": text}]}, **extra)


def test_non_stream_both_upstreams(mesh):
    for model in MODELS:
        status, headers, body = mesh.chat(user("hello there", model))
        assert status == 200, body
        assert headers["content-type"] == "application/json"
        assert len(headers["x-request-id"]) == 26
        assert headers["x-seekmesh-model"] == model
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "Echo: hello there"}
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"]["prompt_tokens"] == 2
        assert body["usage"]["completion_tokens"] == 3
        assert body["usage"]["total_tokens"] == 5
        assert body["id"] and body["created"] > 0 and body["model"] == "deepseek-chat"


def check_sse_framing(stream):
    """COMPAT.md: each event exactly 'data: <one-line JSON>\\n\\n', LF only, no
    event:/id: lines, one id, role first, usage on the final chunk, [DONE] last."""
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream"
    assert stream.headers["cache-control"] == "no-cache"
    assert len(stream.headers["x-request-id"]) == 26
    assert b"\r" not in stream.body
    assert stream.body.endswith(b"data: [DONE]\n\n")
    events = [e for _, e in stream.events]
    for event in events:
        assert "\n" not in event, "one line per event: %r" % event
        assert event.startswith("data: ") or event.startswith(": "), event
        assert not event.startswith("event:") and not event.startswith("id:")
    data = stream.data_events()
    assert data[-1] == "data: [DONE]"
    assert data.count("data: [DONE]") == 1
    chunks = stream.chunks()
    assert len({c["id"] for c in chunks}) == 1, "one id for the whole stream"
    assert len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    final = chunks[-1]
    assert final["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")
    assert "usage" in final and final["usage"]["total_tokens"] > 0
    assert all("usage" not in c for c in chunks[:-1])


def test_stream_both_upstreams(mesh):
    for model in MODELS:
        stream = mesh.stream(user("stream this please", model))
        stream.read_all()
        assert stream.ended, "the chunked response ends properly"
        check_sse_framing(stream)
        assert stream.content() == "Echo: stream this please"
        assert stream.headers["x-seekmesh-model"] == model
        stream.close()


def test_stream_reasoning_before_content(mesh):
    stream = mesh.stream(user("why blue", "deepseek-v4-pro"))
    stream.read_all()
    check_sse_framing(stream)
    assert stream.content("reasoning_content") == "Thinking about: why blue"
    assert stream.content() == "Echo: why blue"
    deltas = [c["choices"][0]["delta"] for c in stream.chunks()]
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    last_reasoning = max(i for i, d in enumerate(deltas) if d.get("reasoning_content"))
    assert last_reasoning < first_content
    final = stream.chunks()[-1]
    assert final["usage"]["completion_tokens_details"]["reasoning_tokens"] == 4
    stream.close()


def test_tool_calls_pass_through(mesh):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    for model in MODELS:
        status, _, body = mesh.chat(user("find it", model, tools=tools))
        assert status == 200, body
        call = body["choices"][0]["message"]["tool_calls"][0]
        assert call["function"]["name"] == "lookup"
        assert json.loads(call["function"]["arguments"]) == {"echo": "find it"}
        assert body["choices"][0]["finish_reason"] == "tool_calls"
    # a tool round trip: assistant content null + tool_calls, then the tool's answer
    messages = [{"role": "user", "content": "find it"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": call["id"], "content": "42"},
                {"role": "user", "content": "thanks"}]
    status, _, body = mesh.chat({"model": "deepseek-chat", "messages": messages})
    assert status == 200 and body["choices"][0]["message"]["content"] == "Echo: thanks"


def test_keepalive_comments_before_first_token(mesh):
    queue_ms = 1000
    stream = mesh.stream(user("wait for it", mock={"queue_ms": queue_ms}))
    stream.read_head()
    assert stream.status == 200
    first = stream.next_event()
    assert first == ": keep-alive", first
    stream.read_all()
    events = [e for _, e in stream.events]
    first_data = next(i for i, e in enumerate(events) if e.startswith("data: "))
    keepalives = [e for e in events[:first_data] if e == ": keep-alive"]
    interval = mesh.config["mock"]["keepalive_ms"]
    assert len(keepalives) >= queue_ms // interval - 1
    # the first keep-alive came long before the first token
    times = [t for t, _ in stream.events]
    assert times[first_data] - times[0] >= queue_ms / 1000 * 0.8
    check_sse_framing(stream)
    assert stream.content() == "Echo: wait for it"
    stream.close()


def test_models(mesh):
    for path in ("/v1/models", "/models"):
        status, headers, body = mesh.request("GET", path)
        assert status == 200
        assert len(headers["x-request-id"]) == 26
        listing = json.loads(body)
        assert listing["object"] == "list"
        ids = {m["id"] for m in listing["data"]}
        assert {"deepseek-chat", "deepseek-reasoner", "deepseek-chat-ws"} <= ids
        assert {"deepseek-v4-flash", "deepseek-v4-pro"} <= ids, "aliases are listed too"
    status, headers, body = mesh.request("GET", "/v1/models/deepseek-v4-pro")
    assert status == 200 and json.loads(body) == {"id": "deepseek-v4-pro", "object": "model",
                                                   "created": 0, "owned_by": "seekmesh"}
    status, headers, body = mesh.request("GET", "/v1/models/gpt-9")
    assert status == 404 and error_of(status, headers, body)["code"] == "model_not_found"


def test_both_paths(mesh):
    status, _, body = mesh.request("POST", "/chat/completions", user("short path"))
    assert status == 200 and json.loads(body)["choices"][0]["message"]["content"] == "Echo: short path"


def error_of(status, headers, body):
    assert headers["content-type"] == "application/json"
    assert len(headers["x-request-id"]) == 26
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_errors_in_openai_envelope(mesh):
    cases = [
        # (method, path, body, key, status, code)
        ("POST", CHAT, user("x"), None, 401, "missing_api_key"),
        ("POST", CHAT, user("x"), "sk-not-a-real-key", 401, "invalid_api_key"),
        ("POST", CHAT, user("x", "gpt-9"), KEY, 404, "model_not_found"),
        ("POST", CHAT, "{not json", KEY, 400, "invalid_json"),
        ("POST", CHAT, {"model": "deepseek-chat"}, KEY, 400, "missing_required_parameter"),
        ("POST", CHAT, user("x", temperature=9), KEY, 422, "invalid_value"),
        ("POST", CHAT, b'{"model":"deepseek-chat","messages":[{"role":"user","content":"\xff"}]}', KEY, 400, "invalid_json"),
        ("GET", CHAT, None, KEY, 405, "method_not_allowed"),
        ("POST", "/v1/embeddings", user("x"), KEY, 404, "unknown_url"),
    ]
    for method, path, body, key, status, code in cases:
        got_status, headers, data = mesh.request(method, path, body, key=key)
        assert got_status == status, (path, body, data)
        error = error_of(got_status, headers, data)
        assert error["code"] == code, error
        assert error["message"]
        assert headers.get("x-should-retry") == "false"


def raw_exchange(mesh, head, timeout=5):
    """Sends head (bytes) on a new connection; returns (seconds, the status
    line, the parsed JSON body) of the answer, or fails after timeout."""
    started = time.time()
    with socket.create_connection((mesh.host, mesh.port), timeout) as sock:
        sock.sendall(head)
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            assert more, "closed without an answer after %.1f s: %r" % (time.time() - started, data)
            data += more
        top, rest = data.split(b"\r\n\r\n", 1)
        lines = top.decode().split("\r\n")
        length = int(next(l.split(":", 1)[1] for l in lines if l.lower().startswith("content-length:")))
        while len(rest) < length:
            more = sock.recv(65536)
            assert more
            rest += more
    return time.time() - started, lines[0], json.loads(rest[:length])


def test_post_without_a_body_is_answered_at_once(mesh):
    """curl -X POST with no -d sends neither Content-Length nor a body:
    answered at once (not after the 30 s request timeout), and -d '' (a
    Content-Length of 0) gets the same words, not the JSON parser's."""
    message = 'the request body is empty; send a JSON object with "model" and "messages"'
    for head in (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                 b"Accept: */*\r\n\r\n" % KEY.encode(),
                 b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                 b"Content-Length: 0\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n"
                 % KEY.encode()):
        seconds, status_line, body = raw_exchange(mesh, head)
        assert status_line == "HTTP/1.1 400 Bad Request", status_line
        assert seconds < 2, seconds
        assert body["error"]["message"] == message, body
        assert body["error"]["type"] == "invalid_request_error"
        assert "line -1" not in body["error"]["message"]


def test_status_lines_have_reason_phrases(mesh):
    """HTTP/1.1 status lines say why: 422 and 429 included, which the HTTP
    library knows no phrase for."""
    cases = [(user("x", temperature=9), "422 Unprocessable Entity"),
             (user("x", mock={"status": 429, "retry_after": 1}), "429 Too Many Requests"),
             (user("x", mock={"status": 402}), "402 Payment Required"),
             (user("x", mock={"status": 503, "retry_after": 1}), "503 Service Unavailable"),
             (user("x", mock={"status": 500}), "502 Bad Gateway"),
             (user("x", "no-such-model"), "404 Not Found"),
             (user("x"), "200 OK")]
    for body, expected in cases:
        payload = json.dumps(body).encode()
        _, status_line, _ = raw_exchange(mesh, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                                         b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                                         b"Content-Length: %d\r\n\r\n%s" % (KEY.encode(), len(payload), payload))
        assert status_line == "HTTP/1.1 " + expected, (body, status_line)


def test_upstream_errors_are_mapped(mesh):
    # (mock status, status the client gets, retry-after expected)
    for upstream, expect, retry in [(429, 429, True), (503, 503, True), (500, 502, False),
                                    (402, 402, False), (400, 400, False)]:
        status, headers, data = mesh.request("POST", CHAT, user("x", mock={"status": upstream, "retry_after": 2}))
        assert status == expect, (upstream, data)
        error = error_of(status, headers, data)
        if retry:
            assert headers["retry-after"] == "2" and headers["retry-after-ms"] == "2000"
            assert headers["x-should-retry"] == "true"
        if upstream == 402:
            assert headers["x-should-retry"] == "false"
        assert error["type"]
    # the same through a WebSocket upstream, where the status rides in the event
    status, headers, data = mesh.request("POST", CHAT, user("x", "deepseek-chat-ws", mock={"status": 429}))
    assert status == 429 and error_of(status, headers, data)["code"] == "rate_limit_exceeded"


def test_body_limit_before_buffering(mesh):
    limit = mesh.config["ingress"]["max_body_bytes"]
    sock = socket.create_connection((mesh.host, mesh.port), 5)
    head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (CHAT, KEY, limit * 10)).encode()
    sock.sendall(head + b"{")        # the body never follows: the answer must not wait for it
    started = time.time()
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, "closed without an answer"
        data += chunk
    assert time.time() - started < 2
    assert data.startswith(b"HTTP/1.1 413")
    assert b"x-request-id:" in data.lower()
    sock.close()
    # a declared body over the limit, sent anyway: the client still reads
    # the 413 (no reset destroys it), and the connection closes
    sock = socket.create_connection((mesh.host, mesh.port), 5)
    body = b"x" * (limit + 4096)
    head = ("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            "Content-Length: %d\r\n\r\n" % (CHAT, KEY, len(body))).encode()
    try:
        sock.sendall(head + body)
    except OSError:
        pass                        # the server may stop reading: fine
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert b"connection: close" in data.lower()
    assert b"request_too_large" in data
    sock.close()
    # a chunked body (no declared length) is cut off when it passes the limit
    sock = socket.create_connection((mesh.host, mesh.port), 5)
    sock.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n" % (CHAT, KEY)).encode())
    data = b""
    try:
        for _ in range(limit // 60000 + 4):
            sock.sendall(b"%x\r\n%s\r\n" % (60000, b"y" * 60000))
        sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    sock.close()


def test_keep_alive_connection_reused(mesh):
    """Three requests, non-stream and stream, written one after the other on
    one raw TCP connection (no client library that reconnects silently):
    each is answered on it, exactly, and it stays open."""
    sock = socket.create_connection((mesh.host, mesh.port), 10)
    reader = sock.makefile("rb")
    for i in range(3):
        stream = i % 2 == 1
        payload = json.dumps(user("again %d" % i, stream=stream)).encode()
        sock.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                      % (CHAT, KEY, len(payload))).encode() + payload)
        status = reader.readline()
        assert status.startswith(b"HTTP/1.1 200"), status
        headers = {}
        while True:
            line = reader.readline()
            assert line, "the server closed the connection"
            if line == b"\r\n":
                break
            name, value = line.decode().split(":", 1)
            headers[name.lower()] = value.strip()
        assert headers.get("connection", "keep-alive").lower() != "close"
        if "content-length" in headers:
            body = reader.read(int(headers["content-length"]))
        else:
            assert headers["transfer-encoding"] == "chunked"
            body = b""
            while True:
                size = int(reader.readline().split(b";")[0], 16)
                body += reader.read(size)
                reader.readline()
                if size == 0:
                    break
        if stream:
            text = "".join(json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
                           for e in body.decode().split("\n\n")
                           if e.startswith("data: {") and '"choices":[{' in e)
        else:
            text = json.loads(body)["choices"][0]["message"]["content"]
        assert text == "Echo: again %d" % i
    reader.close()
    sock.close()


def test_forty_concurrent_mixed_requests_exact(mesh):
    def one(i):
        model = MODELS[i % 2]
        prompt = "request %d with \u00fcnicode \u2603 and \"quotes\"" % i
        tokens = 5 + i % 7
        body = user(prompt, model, mock={"tokens": tokens, "delay_ms": i % 3})
        if i % 4 < 2:
            stream = mesh.stream(body)
            stream.read_all()
            stream.close()
            check_sse_framing(stream)
            return stream.content(), echo(prompt, tokens)
        status, _, reply = mesh.chat(body)
        assert status == 200, reply
        return reply["choices"][0]["message"]["content"], echo(prompt, tokens)

    results = parallel([lambda i=i: one(i) for i in range(40)])
    for got, expected in results:
        assert got == expected
    # nothing left in flight anywhere
    mesh.wait_metric("connector", "seekmesh_connector_inflight", lambda v: v == 0)
    mesh.wait_metric("router", "seekmesh_router_inflight", lambda v: v == 0)


def test_admin_endpoints(mesh):
    for service in ("ingress", "router", "connector", "mock"):
        assert mesh.admin_get(service, "/healthz")[0] == 200
        status, text = mesh.admin_get(service, "/metrics")
        assert status == 200 and "# TYPE" in text
    for service in ("ingress", "router", "connector"):
        assert mesh.admin_get(service, "/readyz")[0] == 200
    assert mesh.metric("router", "seekmesh_router_connectors") == 1


def test_refusals_make_no_upstream_call(make_mesh):
    """Scenario 16: a missing, wrong or revoked key, or a model the key may
    not use, is refused (401/403/404) before any upstream call: the mock's
    own request counters do not move."""
    narrow = "sk-narrow-00001"
    mesh = make_mesh({"keys": [{"id": "dev", "key": KEY, "tenant": "dev"},
                               {"id": "narrow", "key": narrow, "tenant": "t",
                                "models": ["deepseek-reasoner"]}]})
    assert mesh.chat(user("warm"))[0] == 200

    def upstream_calls():
        return sum(mesh.metric("mock", 'seekmesh_mock_requests_total{transport="%s"}' % t)
                   for t in ("http", "ws"))

    before = upstream_calls()
    cases = [(None, "deepseek-chat", 401, "missing_api_key"),
             ("sk-not-a-real-key", "deepseek-chat", 401, "invalid_api_key"),
             (KEY, "gpt-9", 404, "model_not_found"),
             (narrow, "deepseek-chat", 403, "model_not_allowed"),
             (narrow, "deepseek-chat-ws", 403, "model_not_allowed")]
    for key, model, status, code in cases:
        for stream in (False, True):
            got, headers, data = mesh.request("POST", CHAT, user("refused", model, stream=stream), key=key)
            assert got == status and error_of(got, headers, data)["code"] == code, (key, model, data)
    # revoked: removed at run time, refused from then on
    assert mesh.admin_call("DELETE", "/admin/keys/narrow")[0] == 200
    deadline = time.time() + 3
    while mesh.request("POST", CHAT, user("gone", "deepseek-reasoner"), key=narrow)[0] != 401:
        assert time.time() < deadline, "the revoked key still works"
        time.sleep(0.05)
    assert upstream_calls() == before
    # and the counters do count: one allowed call moves them
    assert mesh.chat(user("counted"))[0] == 200
    assert upstream_calls() == before + 1


def test_ingress_keeps_a_quiet_stream_alive_itself(make_mesh):
    """An upstream that goes silent mid-stream (the mock stalls after two
    deltas and sends nothing, not even a comment): the ingress's own timer
    writes ": keep-alive" every ingress.keepalive_interval_ms of quiet."""
    mesh = make_mesh({"ingress": {"keepalive_interval_ms": 200},
                      "connector": {"idle_timeout_ms": 10000}})
    stream = mesh.stream(user("quiet", mock={"tokens": 10, "delay_ms": 10, "stall": "after",
                                            "stall_after": 2}))
    # the deltas that came before the stall
    event = stream.next_event()
    while event.startswith("data: "):
        event = stream.next_event()
    assert event == ": keep-alive"
    started = time.time()
    seen = [(started, event)]
    while time.time() - started < 1.5:
        event = stream.next_event(timeout=1)
        assert event is not None, ("the stream ended or went silent", stream.events[-3:])
        seen.append((time.time(), event))
    stream.close()
    assert all(e == ": keep-alive" for _, e in seen), seen
    # every 200 ms of quiet, give or take a timer period: 5 to 9 in 1.5 s
    assert 5 <= len(seen) <= 9, seen
    gaps = [b[0] - a[0] for a, b in zip(seen, seen[1:])]
    assert all(0.15 <= g <= 0.5 for g in gaps), gaps
