"""seekmesh-mock: the DeepSeek-compatible upstream, over real sockets.

Starts build/bin/seekmesh-mock with a temporary config on free ports and
checks what gateways and tests rely on: the JSON and SSE shapes byte for
byte, the queue keep-alives, the fault directives (status, reset_after,
stall), the WebSocket transport carrying the very bytes of the HTTP stream,
the API key, keep-alive reuse and the metrics that prove cancellation.
Then replicas (instance i binds every port i x mesh.port_stride higher) and
the fault switch on the admin port (PUT/GET/DELETE /mock/fault), on two
instances started by scripts/mesh.
Only the standard library: a raw HTTP/1.1 client and a tiny WebSocket
client (masked frames from os.urandom).

Run: make build/bin/seekmesh-mock && /usr/bin/python3 -m pytest tests/integration/test_mock.py
(MOCK_BINARY=path tests another build.)
"""
import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

from meshlib import Mesh

REPO = Path(__file__).resolve().parents[2]
#  MOCK_BINARY: another build of it (say, with AddressSanitizer)
BINARY = Path(os.environ.get("MOCK_BINARY") or REPO / "build" / "bin" / "seekmesh-mock")
CHAT = "/v1/chat/completions"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mock:
    """One seekmesh-mock process on free ports.  As replica `instance` of a
    mesh, the config names each port instance x stride lower than the free
    one it must bind (self.port, self.admin_port, self.tls_port)."""

    def __init__(self, tmp, env_extra=None, instance=0, stride=10, **settings):
        shift = instance * stride
        self.port = free_port()
        self.admin_port = free_port()
        mock = {"listen": "127.0.0.1:%d" % (self.port - shift),
                "admin_listen": "127.0.0.1:%d" % (self.admin_port - shift),
                "keepalive_ms": 100, "ws_chunk_size": 16}
        mock.update(settings)
        if mock.get("tls_listen") == "auto":
            self.tls_port = free_port()
            mock["tls_listen"] = "127.0.0.1:%d" % (self.tls_port - shift)
        self.config = Path(tmp) / ("mock-%d.json" % self.port)
        self.config.write_text(json.dumps({"mesh": {"drain_ms": 3000, "port_stride": stride},
                                           "mock": mock}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
        if instance:
            env["SEEKMESH_INSTANCE"] = str(instance)
        env.update(env_extra or {})
        self.log_path = Path(tmp) / ("mock-%d.log" % self.port)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([str(BINARY), "-c", str(self.config)], env=env,
                                         stderr=log)
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.admin_port), 0.2).close()
                return
            except OSError:
                assert self.proc.poll() is None, self.log()
                time.sleep(0.02)
        raise AssertionError("seekmesh-mock did not start")

    def log(self):
        return self.log_path.read_text()

    def connect(self, timeout=5):
        return socket.create_connection(("127.0.0.1", self.port), timeout)

    def metric(self, name):
        status, _, body = request(socket.create_connection(("127.0.0.1", self.admin_port), 5),
                                  "GET", "/metrics")
        assert status == 200
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return 0.0

    def wait_metric(self, name, value, timeout=3):
        deadline = time.time() + timeout
        while self.metric(name) < value and time.time() < deadline:
            time.sleep(0.02)
        return self.metric(name)

    def stop(self):
        """SIGTERM; returns the exit status.  Sanitizer reports fail the test."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(5)
        log = self.log()
        assert "runtime error" not in log and "Sanitizer" not in log, log
        return status


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    if not BINARY.exists():
        pytest.skip("build/bin/seekmesh-mock is not built")
    m = Mock(tmp_path_factory.mktemp("mock"))
    yield m
    assert m.stop() == 0


# --- a raw HTTP/1.1 client ------------------------------------------------

class Reader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def line(self):
        while b"\r\n" not in self.buf:
            self.fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exactly(self, n):
        while len(self.buf) < n:
            self.fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


def send_request(sock, method, path, body=None, headers=None):
    data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    head = "%s %s HTTP/1.1\r\nHost: mock\r\n" % (method, path)
    for name, value in (headers or {}).items():
        head += "%s: %s\r\n" % (name, value)
    if body is not None:
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    sock.sendall(head.encode() + b"\r\n" + data)


def read_head(reader):
    status = int(reader.line().split()[1])
    headers = {}
    while True:
        line = reader.line()
        if not line:
            return status, headers
        name, value = line.decode().split(":", 1)
        headers[name.strip().lower()] = value.strip()


def read_chunk(reader):
    """The payload of the next chunk of a chunked body; None after the last."""
    size = int(reader.line().split(b";")[0], 16)
    if size == 0:
        assert reader.line() == b""
        return None
    data = reader.exactly(size)
    assert reader.exactly(2) == b"\r\n"
    return data


def read_chunks(reader):
    return iter(lambda: read_chunk(reader), None)


def read_response(reader):
    status, headers = read_head(reader)
    if headers.get("transfer-encoding") == "chunked":
        body = b"".join(read_chunks(reader))
    else:
        body = reader.exactly(int(headers.get("content-length", 0)))
    return status, headers, body


def request(sock, method, path, body=None, headers=None):
    with sock:
        send_request(sock, method, path, body, headers)
        return read_response(Reader(sock))


def chat(prompt="hello world", **fields):
    body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": prompt}]}
    body.update(fields)
    return body


def events(body):
    """Splits an SSE body into events, checking the framing on the way."""
    text = body.decode()
    assert "\r" not in text and text.endswith("\n\n")
    out = text[:-2].split("\n\n")
    for event in out:
        assert "\n" not in event, "one line per event"
        assert event.startswith("data: ") or event == ": keep-alive"
    return out


def chunks(evs):
    return [json.loads(e[6:]) for e in evs if e.startswith("data: {")]


# --- HTTP ----------------------------------------------------------------

def test_models_and_balance(mock):
    status, headers, body = request(mock.connect(), "GET", "/v1/models")
    assert status == 200 and headers["content-type"] == "application/json"
    assert [m["id"] for m in json.loads(body)["data"]] == ["deepseek-chat", "deepseek-reasoner"]
    status, _, body = request(mock.connect(), "GET", "/user/balance")
    assert status == 200 and json.loads(body)["is_available"] is True


def test_non_stream_shape(mock):
    status, headers, body = request(mock.connect(), "POST", CHAT, chat(max_tokens=100))
    assert status == 200 and headers["content-type"] == "application/json"
    reply = json.loads(body)
    assert reply["object"] == "chat.completion" and reply["id"].startswith("mock-")
    assert reply["model"] == "deepseek-chat" and reply["system_fingerprint"] == "fp_mock"
    choice = reply["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Echo: hello world"}
    assert choice["finish_reason"] == "stop" and choice["logprobs"] is None
    assert reply["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5,
                              "prompt_tokens_details": {"cached_tokens": 0},
                              "prompt_cache_hit_tokens": 0, "prompt_cache_miss_tokens": 2}


def test_stream_framing(mock):
    sock = mock.connect()
    send_request(sock, "POST", "/chat/completions", chat("say \"hi\" \u4f60\u597d", stream=True))
    status, headers, body = read_response(Reader(sock))
    sock.close()
    assert status == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    evs = events(body)
    assert evs[-1] == "data: [DONE]"
    cs = chunks(evs)
    assert len({(c["id"], c["created"]) for c in cs}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in cs)
    assert cs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["choices"][0]["delta"]["content"] for c in cs[1:-1]]
    assert deltas == ["Echo: ", "say ", "\"hi\" ", "\u4f60\u597d"]
    assert all(c["choices"][0]["finish_reason"] is None for c in cs[:-1])
    assert all("usage" not in c for c in cs[:-1])
    final = cs[-1]
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["choices"][0]["delta"] == {"content": ""}
    assert final["usage"]["completion_tokens"] == 4


def test_reasoning_tools_and_length(mock):
    body = chat("why", model="deepseek-reasoner")
    body["model"] = "deepseek-reasoner"
    _, _, raw = request(mock.connect(), "POST", CHAT, body)
    message = json.loads(raw)["choices"][0]["message"]
    assert message["reasoning_content"] == "Thinking about: why"
    assert message["content"] == "Echo: why"
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    _, _, raw = request(mock.connect(), "POST", CHAT, chat("Paris \u00e9t\u00e9", stream=True, tools=tools))
    cs = chunks(events(raw))
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in cs[1:-1]]
    assert calls[0]["function"] == {"name": "lookup", "arguments": ""} and calls[0]["id"] == "call_mock_0"
    assert json.loads("".join(c["function"]["arguments"] for c in calls)) == {"echo": "Paris \u00e9t\u00e9"}
    assert cs[-1]["choices"][0]["finish_reason"] == "tool_calls"
    _, _, raw = request(mock.connect(), "POST", CHAT, chat("a b c d", max_tokens=2))
    reply = json.loads(raw)
    assert reply["choices"][0]["message"]["content"] == "Echo: a "
    assert reply["choices"][0]["finish_reason"] == "length"


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def tool_round(prompt, result, **fields):
    """A conversation where the tool's result answers the last user message."""
    call = {"id": "call_1", "type": "function",
            "function": {"name": "lookup", "arguments": json.dumps({"echo": prompt})}}
    return chat(prompt, tools=TOOLS, messages=[
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": result}], **fields)


def test_after_the_tool_result_the_answer_is_text(mock):
    # An agent loop ends: the tools are still offered, but the tool has answered
    _, _, raw = request(mock.connect(), "POST", CHAT, tool_round("weather in Paris", "sunny"))
    choice = json.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"] == {"role": "assistant", "content": "Echo: weather in Paris"}
    _, _, raw = request(mock.connect(), "POST", CHAT,
                        tool_round("weather in Paris", "sunny", stream=True))
    cs = chunks(events(raw))
    assert all("tool_calls" not in c["choices"][0]["delta"] for c in cs)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in cs) == \
        "Echo: weather in Paris"
    assert cs[-1]["choices"][0]["finish_reason"] == "stop"
    # a new user message after the tool's answer asks for a call again
    body = tool_round("weather in Paris", "sunny")
    body["messages"].append({"role": "user", "content": "and in Rome?"})
    _, _, raw = request(mock.connect(), "POST", CHAT, body)
    choice = json.loads(raw)["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == \
        {"echo": "and in Rome?"}


def test_json_mode_answers_a_json_object(mock):
    fmt = {"type": "json_object"}
    _, _, raw = request(mock.connect(), "POST", CHAT, chat("give \"json\"", response_format=fmt))
    content = json.loads(raw)["choices"][0]["message"]["content"]
    assert json.loads(content) == {"echo": "give \"json\""}
    # streamed, and padded to N deltas, the joined content is still one object
    _, _, raw = request(mock.connect(), "POST", CHAT,
                        chat("give json", response_format=fmt, stream=True, mock={"tokens": 5}))
    cs = chunks(events(raw))
    assert len(cs) == 7
    assert json.loads("".join(c["choices"][0]["delta"]["content"] for c in cs)) == \
        {"echo": "give json"}
    # and after a tool's result
    _, _, raw = request(mock.connect(), "POST", CHAT,
                        tool_round("sum it", "[1,2]", response_format=fmt))
    assert json.loads(json.loads(raw)["choices"][0]["message"]["content"]) == {"echo": "sum it"}
    # response_format "text" is the plain echo
    _, _, raw = request(mock.connect(), "POST", CHAT, chat("x", response_format={"type": "text"}))
    assert json.loads(raw)["choices"][0]["message"]["content"] == "Echo: x"


def test_replay_file_gives_recorded_answers(tmp_path):
    recordings = {"recordings": [
        {"prompt": "How many?", "tool_call": {"name": "run_sql",
                                              "arguments": {"sql": "SELECT count(*) FROM t"}}},
        {"prompt": "How many?", "after_tool": "no such table",
         "tool_call": {"name": "run_sql", "arguments": "{\"sql\":\"SELECT count(*) FROM u\"}"}},
        {"prompt": "How many?", "after_tool": "", "content": "There are 3."},
        {"prompt": "Greet me", "content": "Hello, \u00e9t\u00e9 friend"},
    ]}
    path = tmp_path / "replay.json"
    path.write_text(json.dumps(recordings))
    m = Mock(tmp_path, replay_file=str(path))
    try:
        assert "replaying 4 recorded answers" in m.log()

        def answer(body):
            status, _, raw = request(m.connect(), "POST", CHAT, body)
            assert status == 200, raw
            return json.loads(raw)["choices"][0]

        tools = [{"type": "function", "function": {"name": "run_sql", "parameters": {}}}]
        choice = answer(chat("How many?", tools=tools))
        call = choice["message"]["tool_calls"][0]
        assert choice["finish_reason"] == "tool_calls" and call["function"]["name"] == "run_sql"
        assert json.loads(call["function"]["arguments"]) == {"sql": "SELECT count(*) FROM t"}
        # the repair round: the tool reported the database's error
        messages = [{"role": "user", "content": "How many?"},
                    {"role": "assistant", "content": None, "tool_calls": [call]},
                    {"role": "tool", "tool_call_id": call["id"],
                     "content": "{\"error\": \"no such table: t\"}"}]
        choice = answer(chat(tools=tools, messages=messages))
        assert json.loads(choice["message"]["tool_calls"][0]["function"]["arguments"]) == \
            {"sql": "SELECT count(*) FROM u"}
        # any other tool result: the recorded text
        messages[2]["content"] = "[[3]]"
        assert answer(chat(tools=tools, messages=messages))["message"]["content"] == "There are 3."
        # streamed, the recorded text in pieces
        _, _, raw = request(m.connect(), "POST", CHAT, chat("Greet me", stream=True))
        cs = chunks(events(raw))
        assert "".join(c["choices"][0]["delta"]["content"] for c in cs) == \
            "Hello, \u00e9t\u00e9 friend"
        # a recorded call needs the tool offered; unrecorded prompts are echoed
        assert answer(chat("How many?"))["message"]["content"] == "Echo: How many?"
        assert answer(chat("how many?", tools=tools))["message"]["tool_calls"][0]["function"] == \
            {"name": "run_sql", "arguments": "{\"echo\":\"how many?\"}"}
    finally:
        assert m.stop() == 0


@pytest.mark.parametrize("content, says", [
    (None, "No such file"),
    ("{\"recordings\": [{\"prompt\": \"p\"}]}", "recordings[0]: needs either"),
    ("{\"recordings\": [", "line 1"),
])
def test_bad_replay_file_exits_78_with_one_line(tmp_path, content, says):
    # 78 (EX_CONFIG): a configuration error, which scripts/mesh does not
    # restart until the config changes
    path = tmp_path / "replay.json"
    if content is not None:
        path.write_text(content)
    config = tmp_path / "mock.json"
    config.write_text(json.dumps({"mock": {"listen": "127.0.0.1:%d" % free_port(),
                                           "admin_listen": "127.0.0.1:%d" % free_port(),
                                           "replay_file": str(path)}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
    done = subprocess.run([str(BINARY), "-c", str(config)], env=env, capture_output=True,
                          text=True, timeout=5)
    assert done.returncode == 78
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "mock.replay_file" in lines[0] and says in lines[0], lines


def test_queue_sends_keepalives_first(mock):
    started = time.time()
    _, _, raw = request(mock.connect(), "POST", CHAT,
                        chat(stream=True, mock={"queue_ms": 250, "tokens": 2}))
    assert time.time() - started >= 0.25
    evs = events(raw)
    first_data = next(i for i, e in enumerate(evs) if e.startswith("data: "))
    # one at once, then every 100 ms until 250 ms have passed: at 0, 100 and
    # 200 ms, one less when a timer fires late on a busy machine
    assert 2 <= first_data <= 3 and evs[:first_data] == [": keep-alive"] * first_data, evs
    assert len(chunks(evs)) == 4
    # Non-stream: blank lines while queued, then the JSON body
    status, headers, raw = request(mock.connect(), "POST", CHAT, chat(mock={"queue_ms": 150}))
    assert status == 200 and headers["transfer-encoding"] == "chunked"
    assert raw.startswith(b"\n\n") and json.loads(raw)["object"] == "chat.completion"


def test_status_directive_and_errors(mock):
    status, headers, body = request(mock.connect(), "POST", CHAT,
                                    chat(mock={"status": 429, "retry_after": 7}))
    assert status == 429 and headers["retry-after"] == "7"
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": {"message": "Rate limit reached for requests",
                                          "type": "rate_limit_error", "param": None,
                                          "code": "rate_limit_exceeded"}}
    status, _, body = request(mock.connect(), "POST", CHAT, chat(mock={"status": 402}))
    assert status == 402 and json.loads(body)["error"]["message"] == "Insufficient Balance"
    for raw, expect in ((b"{not json", 400), (b'{"model":"m"}', 400), (b'{"model":"m","messages":[]}', 400)):
        status, headers, body = request(mock.connect(), "POST", CHAT, raw)
        assert status == expect
        error = json.loads(body)["error"]
        assert error["type"] == "invalid_request_error" and error["param"] is None
    assert request(mock.connect(), "GET", "/v2/nothing")[0] == 404
    assert request(mock.connect(), "DELETE", "/models")[0] == 405


def test_delay_paces_deltas_and_bodies(mock):
    started = time.time()
    _, _, raw = request(mock.connect(), "POST", CHAT, chat(mock={"tokens": 4, "delay_ms": 50}))
    assert time.time() - started >= 0.2                  # 4 deltas x 50 ms, then the body
    assert json.loads(raw)["choices"][0]["message"]["content"] == "Echo: hello world t1 t2 t3"
    sock = mock.connect()
    send_request(sock, "POST", CHAT, chat(stream=True, mock={"tokens": 3, "delay_ms": 60}))
    reader = Reader(sock)
    read_head(reader)
    arrivals = []
    for chunk in read_chunks(reader):
        arrivals.append((time.time(), chunk))
    sock.close()
    times = [t for t, c in arrivals if b'"content":"' in c and b'"content":""' not in c]
    assert len(times) == 3 and times[2] - times[0] >= 0.1


def test_reset_after_resets_mid_stream(mock):
    sock = mock.connect()
    send_request(sock, "POST", CHAT, chat(stream=True, mock={"tokens": 10, "reset_after": 3}))
    data = b""
    with pytest.raises(ConnectionResetError):
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break                   # a FIN would fail the raises()
            data += chunk
    sock.close()
    assert data.count(b"data: {") == 4              # role + 3 deltas
    assert b"[DONE]" not in data


def test_keepalive_reuse(mock):
    before = mock.metric('seekmesh_mock_connections_total{transport="http"}')
    sock = mock.connect()
    reader = Reader(sock)
    for stream in (False, True, False):
        send_request(sock, "POST", CHAT, chat(stream=stream))
        assert read_response(reader)[0] == 200
    sock.close()
    assert mock.metric('seekmesh_mock_connections_total{transport="http"}') == before + 1


def test_client_leaving_mid_stream_counts_as_aborted(mock):
    aborted = mock.metric("seekmesh_mock_streams_aborted_total")
    sock = mock.connect()
    send_request(sock, "POST", CHAT, chat(stream=True, mock={"tokens": 100, "delay_ms": 20}))
    reader = Reader(sock)
    read_head(reader)
    read_chunk(reader)
    sock.close()
    assert mock.wait_metric("seekmesh_mock_streams_aborted_total", aborted + 1) == aborted + 1
    # A stalled request (no head at all) is aborted the same way
    sock = mock.connect()
    send_request(sock, "POST", CHAT, chat(mock={"stall": "first"}))
    sock.settimeout(0.2)
    with pytest.raises(socket.timeout):
        sock.recv(1)
    sock.close()
    assert mock.wait_metric("seekmesh_mock_streams_aborted_total", aborted + 2) == aborted + 2
    assert mock.wait_metric("seekmesh_mock_streams_active", 0) == 0


# --- WebSocket ------------------------------------------------------------

class WebSocket:
    def __init__(self, sock, path=CHAT, headers=None):
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        extra = "".join("%s: %s\r\n" % kv for kv in (headers or {}).items())
        sock.sendall(("GET %s HTTP/1.1\r\nHost: mock\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: %s\r\n%s\r\n" % (path, key, extra)).encode())
        self.reader = Reader(sock)
        self.status, self.headers = read_head(self.reader)
        if self.status == 101:
            accept = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
            assert self.headers["sec-websocket-accept"] == accept

    def send(self, payload, opcode=1, fragments=1):
        if isinstance(payload, dict):
            payload = json.dumps(payload).encode()
        cut = max(1, len(payload) // fragments)
        parts = [payload[i:i + cut] for i in range(0, len(payload), cut)] or [b""]
        for i, part in enumerate(parts):
            fin = 0x80 if i == len(parts) - 1 else 0
            op = opcode if i == 0 else 0
            mask = os.urandom(4)
            n = len(part)
            head = bytes([fin | op]) + (bytes([0x80 | n]) if n < 126 else
                                        bytes([0x80 | 126]) + struct.pack("!H", n))
            self.sock.sendall(head + mask + bytes(b ^ mask[j % 4] for j, b in enumerate(part)))

    def frame(self):
        b0, b1 = self.reader.exactly(2)
        assert not b1 & 0x80, "server frames are not masked"
        n = b1 & 0x7f
        if n == 126:
            n = struct.unpack("!H", self.reader.exactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.reader.exactly(8))[0]
        return b0, self.reader.exactly(n)

    def reply(self, max_frame):
        """Concatenated payload of binary frames up to [DONE]."""
        data = b""
        while not data.endswith(b"data: [DONE]\n\n"):
            b0, payload = self.frame()
            assert b0 == 0x82 and 1 <= len(payload) <= max_frame
            data += payload
        return data


def normalize(raw):
    raw = re.sub(rb'"id":"mock-[0-9-]+"', b'"id":"X"', raw)
    return re.sub(rb'"created":[0-9]+', b'"created":0', raw)


def test_ws_carries_the_http_stream_bytes(mock):
    body = chat("ws \u00e9\u00e9\u00e9 test", model="deepseek-reasoner", mock={"queue_ms": 120})
    body["model"] = "deepseek-reasoner"
    ws_before = mock.metric('seekmesh_mock_requests_total{transport="ws"}')
    _, _, http_bytes = request(mock.connect(), "POST", CHAT, dict(body, stream=True))
    ws = WebSocket(mock.connect())
    assert ws.status == 101
    ws.send(body, opcode=1, fragments=3)           # stream flag absent: SSE all the same
    ws.send(chat("second"), opcode=2)              # queued behind the first
    first = ws.reply(16)
    second = ws.reply(16)
    assert normalize(first) == normalize(http_bytes)
    assert first.startswith(b": keep-alive\n\n")
    assert chunks(events(second))[1]["choices"][0]["delta"]["content"] == "Echo: "
    assert mock.metric('seekmesh_mock_requests_total{transport="ws"}') == ws_before + 2
    # Ping, an error event, then a close handshake
    ws.send(b"hb", opcode=9)
    assert ws.frame() == (0x89 + 1, b"hb")
    ws.send(chat(mock={"status": 503}))
    evs = events(ws.reply(16))
    assert json.loads(evs[0][6:])["status"] == 503 and evs[1] == "data: [DONE]"
    ws.send(struct.pack("!H", 1000), opcode=8)
    assert ws.frame() == (0x88, struct.pack("!H", 1000))
    assert ws.sock.recv(1) == b""
    ws.sock.close()


def test_ws_upgrade_refusals(mock):
    ws = WebSocket(mock.connect(), headers={})
    ws.sock.close()
    sock = mock.connect()
    status, headers, body = request(sock, "GET", CHAT, None,
                                    {"Upgrade": "websocket", "Connection": "Upgrade",
                                     "Sec-WebSocket-Version": "8", "Sec-WebSocket-Key": "x" * 24})
    assert status == 426 and headers["sec-websocket-version"] == "13"


def test_ws_reset_after_closes_without_close_frame(mock):
    ws = WebSocket(mock.connect())
    ws.send(chat(mock={"tokens": 5, "reset_after": 2}))
    data = b""
    try:
        while True:
            b0, payload = ws.frame()
            assert b0 == 0x82
            data += payload
    except (EOFError, ConnectionResetError):
        pass
    ws.sock.close()
    assert data.count(b"data: {") == 3 and b"[DONE]" not in data


# --- separate processes ----------------------------------------------------

def test_api_key(tmp_path):
    m = Mock(tmp_path, {"SEEKMESH_MOCK_API_KEY": "sk-test-1234"})
    try:
        status, headers, body = request(m.connect(), "POST", CHAT, chat())
        assert status == 401 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"error": {
            "message": "Authentication Fails, Your api key: ****xxxx is invalid",
            "type": "authentication_error", "param": None, "code": "invalid_request_error"}}
        assert request(m.connect(), "GET", "/models", None,
                       {"Authorization": "Bearer wrong"})[0] == 401
        assert WebSocket(m.connect()).status == 401
        auth = {"Authorization": "Bearer sk-test-1234"}
        assert request(m.connect(), "POST", CHAT, chat(), auth)[0] == 200
        assert WebSocket(m.connect(), headers=auth).status == 101
        assert m.metric("seekmesh_mock_auth_failures_total") == 3
    finally:
        assert m.stop() == 0


def test_force_status(tmp_path):
    m = Mock(tmp_path, force_status=503)
    try:
        status, _, body = request(m.connect(), "POST", CHAT, chat(stream=True))
        assert status == 503 and json.loads(body)["error"]["code"] == "service_unavailable"
        assert request(m.connect(), "GET", "/models")[0] == 200
        ws = WebSocket(m.connect())
        ws.send(b"not even json")
        error = json.loads(events(ws.reply(16))[0][6:])
        assert error["status"] == 503 and error["error"]["type"] == "server_error"
        ws.sock.close()
        # force_status is the fault switch, set from the start
        assert admin(m.admin_port, "GET", "/mock/fault") == (200, {"mode": "status", "status": 503})
        assert admin(m.admin_port, "DELETE", "/mock/fault") == (200, {"mode": "none"})
        assert request(m.connect(), "POST", CHAT, chat())[0] == 200
    finally:
        assert m.stop() == 0


def test_sigterm_finishes_streams_then_exits(tmp_path):
    m = Mock(tmp_path, threads=2)
    sock = m.connect()
    send_request(sock, "POST", CHAT, chat(stream=True, mock={"tokens": 8, "delay_ms": 40}))
    reader = Reader(sock)
    assert read_head(reader)[0] == 200
    read_chunk(reader)
    m.proc.send_signal(signal.SIGTERM)
    rest = b"".join(read_chunks(reader))
    assert rest.endswith(b"data: [DONE]\n\n")
    assert sock.recv(1) == b""                     # then the connection closes
    sock.close()
    assert m.stop() == 0


def test_port_in_use_exits_1_with_one_line(mock, tmp_path):
    config = tmp_path / "clash.json"
    config.write_text(json.dumps({"mock": {"listen": "127.0.0.1:%d" % mock.port,
                                           "admin_listen": "127.0.0.1:%d" % free_port()}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
    done = subprocess.run([str(BINARY), "-c", str(config)], env=env, capture_output=True,
                          text=True, timeout=5)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(mock.port) in lines[0] and " F " in lines[0]


def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1: (cert, key) paths."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                           "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                          capture_output=True)
    if made.returncode != 0:
        pytest.skip("openssl cannot make a test certificate")
    return cert, key


def test_tls(tmp_path):
    cert, key = certificate(tmp_path)
    m = Mock(tmp_path, tls_listen="auto", tls_cert=str(cert), tls_key=str(key))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        raw = socket.create_connection(("127.0.0.1", m.tls_port), 5)
        sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        reader = Reader(sock)
        send_request(sock, "POST", CHAT, chat("x " * 3000, stream=True))
        status, _, body = read_response(reader)
        assert status == 200 and events(body)[-1] == "data: [DONE]"
        send_request(sock, "POST", CHAT, chat("y"))
        assert json.loads(read_response(reader)[2])["choices"][0]["message"]["content"] == "Echo: y"
        sock.close()
        ws = WebSocket(context.wrap_socket(socket.create_connection(("127.0.0.1", m.tls_port), 5),
                                           server_hostname="127.0.0.1"))
        ws.send(chat("over wss"))
        assert b"over " in ws.reply(16)
        ws.sock.close()
    finally:
        assert m.stop() == 0


# --- replicas and the fault switch -----------------------------------------

def admin(port, method, path, body=None):
    """(status, JSON body) of an admin request; body a dict, or raw bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        conn.request(method, path, body=data)
        response = conn.getresponse()
        assert response.getheader("content-type") == "application/json"
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_instance_shifts_every_port(tmp_path):
    cert, key = certificate(tmp_path)
    # Instance 2 with a stride of 7: listen, tls_listen and admin_listen + 14
    m = Mock(tmp_path, instance=2, stride=7, tls_listen="auto", tls_cert=str(cert),
             tls_key=str(key))
    try:
        assert request(m.connect(), "POST", CHAT, chat())[0] == 200
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        sock = context.wrap_socket(socket.create_connection(("127.0.0.1", m.tls_port), 5),
                                   server_hostname="127.0.0.1")
        assert request(sock, "POST", CHAT, chat())[0] == 200
        assert admin(m.admin_port, "GET", "/mock/fault") == (200, {"mode": "none"})
        assert ("listening on 127.0.0.1:%d, TLS on 127.0.0.1:%d, admin on 127.0.0.1:%d"
                % (m.port, m.tls_port, m.admin_port)) in m.log()
    finally:
        assert m.stop() == 0


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two seekmesh-mock instances started by scripts/mesh (nothing else),
    which returns once both answer /healthz on their own admin port."""
    if not (BINARY.parent / "seekmesh-mock").exists():
        pytest.skip("build/bin/seekmesh-mock is not built")
    config = {"mesh": {"instances": {"mock": 2}},
              "mock": {"keepalive_ms": 100, "ws_chunk_size": 16, "threads": 2}}
    m = Mesh(tmp_path_factory.mktemp("pair"), config,
             env={"SEEKMESH_MESH_SERVICES": "mock", "SEEKMESH_BIN": str(BINARY.parent)}).up()
    m.mock_ports = [int(m.effective(i)["mock"]["listen"].rsplit(":", 1)[1]) for i in range(2)]
    m.admin_ports = [m.admin_address("mock", i)[1] for i in range(2)]
    yield m
    m.down()


@pytest.fixture
def instances(pair):
    """The pair, its faults cleared after the test."""
    yield pair
    for port in pair.admin_ports:
        assert admin(port, "DELETE", "/mock/fault")[0] == 200


def connect(port, timeout=5):
    return socket.create_connection(("127.0.0.1", port), timeout)


def unanswered(sock):
    """True if the peer closes (FIN or reset) without sending a byte."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    finally:
        sock.close()


def test_two_instances_answer_on_shifted_ports(instances):
    assert instances.mock_ports[1] == instances.mock_ports[0] + instances.stride
    for i, port in enumerate(instances.mock_ports):
        status, _, body = request(connect(port), "POST", CHAT, chat("instance %d" % i))
        assert status == 200
        assert json.loads(body)["choices"][0]["message"]["content"] == "Echo: instance %d" % i
        assert instances.admin_get("mock", "/healthz", i)[0] == 200
        assert instances.metric("mock", 'seekmesh_mock_requests_total{transport="http"}', i) >= 1
    status = instances.mesh("status").stdout
    assert re.search(r"mock-0 +\d+ +running", status) and re.search(r"mock-1 +\d+ +running", status)


def test_fault_status_fails_one_instance(instances):
    up, down = instances.mock_ports
    admin_up, admin_down = instances.admin_ports
    fault = {"status": 503, "retry_after": 2}
    assert admin(admin_down, "PUT", "/mock/fault", fault) == (200, dict(fault, mode="status"))
    assert admin(admin_down, "GET", "/mock/fault") == (200, dict(fault, mode="status"))
    assert admin(admin_up, "GET", "/mock/fault") == (200, {"mode": "none"})
    before = instances.metric("mock", 'seekmesh_mock_faults_total{mode="status"}', 1)
    for stream in (False, True):
        status, headers, body = request(connect(down), "POST", CHAT, chat(stream=stream))
        assert status == 503 and headers["retry-after"] == "2"
        assert json.loads(body)["error"]["code"] == "service_unavailable"
        status, _, body = request(connect(up), "POST", CHAT, chat(stream=stream))
        assert status == 200 and b"Echo: " in body
    # over WebSocket: one error event, then [DONE]
    ws = WebSocket(connect(down))
    ws.send(chat())
    evs = events(ws.reply(16))
    assert len(evs) == 2 and evs[1] == "data: [DONE]"
    assert json.loads(evs[0][6:]) == {"error": {
        "message": "Server overloaded, please try again later", "type": "server_error",
        "param": None, "code": "service_unavailable"}, "status": 503}
    ws.sock.close()
    ws = WebSocket(connect(up))
    ws.send(chat())
    assert b"Echo: " in ws.reply(16)
    ws.sock.close()
    # only chat requests fail; the metric counts them
    assert request(connect(down), "GET", "/v1/models")[0] == 200
    assert instances.metric("mock", 'seekmesh_mock_faults_total{mode="status"}', 1) == before + 3
    assert instances.metric("mock", 'seekmesh_mock_faults_total{mode="status"}', 0) == 0
    # DELETE clears it
    assert admin(admin_down, "DELETE", "/mock/fault") == (200, {"mode": "none"})
    assert request(connect(down), "POST", CHAT, chat())[0] == 200
    assert 'fault set: {"mode":"status","status":503,"retry_after":2}' in instances.logs("mock-1")


def test_fault_count_recovers_after_n(instances):
    port, admin_port = instances.mock_ports[1], instances.admin_ports[1]
    fault = {"mode": "status", "status": 429, "count": 2}
    assert admin(admin_port, "PUT", "/mock/fault", fault) == (200, fault)
    # the same keep-alive connection: 429, 429, then answers again
    sock = connect(port)
    reader = Reader(sock)
    send_request(sock, "POST", CHAT, chat())
    status, headers, _ = read_response(reader)
    assert status == 429 and "retry-after" not in headers
    assert admin(admin_port, "GET", "/mock/fault") == (200, dict(fault, count=1))
    send_request(sock, "POST", CHAT, chat())
    assert read_response(reader)[0] == 429
    send_request(sock, "POST", CHAT, chat())
    assert read_response(reader)[0] == 200
    sock.close()
    assert admin(admin_port, "GET", "/mock/fault") == (200, {"mode": "none"})


def test_fault_close_answers_nothing(instances):
    port, admin_port = instances.mock_ports[1], instances.admin_ports[1]
    # connections accepted before the fault: an HTTP keep-alive and a WebSocket
    sock = connect(port)
    reader = Reader(sock)
    send_request(sock, "POST", CHAT, chat())
    assert read_response(reader)[0] == 200
    ws = WebSocket(connect(port))
    assert ws.status == 101
    before = instances.metric("mock", 'seekmesh_mock_faults_total{mode="close"}', 1)
    assert admin(admin_port, "PUT", "/mock/fault", {"mode": "close"}) == (200, {"mode": "close"})
    # a new connection is closed as soon as it is accepted, request or not
    assert unanswered(connect(port))
    fresh = connect(port)
    send_request(fresh, "POST", CHAT, chat())
    assert unanswered(fresh)
    # on the old ones, the next chat request ends the connection unanswered
    send_request(sock, "POST", CHAT, chat())
    assert reader.buf == b"" and unanswered(sock)
    ws.send(chat())
    assert ws.reader.buf == b"" and unanswered(ws.sock)           # not even a close frame
    # the other instance is untouched
    assert request(connect(instances.mock_ports[0]), "POST", CHAT, chat())[0] == 200
    assert instances.wait_metric("mock", 'seekmesh_mock_faults_total{mode="close"}',
                                 lambda v: v == before + 4, instance=1)
    # with a count: the next connection is closed, then all is well
    assert admin(admin_port, "PUT", "/mock/fault", {"mode": "close", "count": 1}) == \
        (200, {"mode": "close", "count": 1})
    assert unanswered(connect(port))
    assert request(connect(port), "POST", CHAT, chat())[0] == 200
    assert admin(admin_port, "GET", "/mock/fault") == (200, {"mode": "none"})


@pytest.mark.parametrize("body, message", [
    (b"", "not valid JSON"),
    (b"{\"status\": 503", "not valid JSON"),
    (b"[503]", "must be a JSON object"),
    (b"{}", "is required"),
    (b"{\"status\": 200}", "from 400 to 599"),
    (b"{\"status\": \"503\"}", "from 400 to 599"),
    (b"{\"status\": \"reset\"}", "from 400 to 599"),
    (b"{\"mode\": \"status\"}", "needs a status"),
    (b"{\"mode\": \"explode\"}", "mode must be"),
    (b"{\"mode\": \"close\", \"status\": 503}", "mode \"status\" only"),
    (b"{\"status\": 503, \"retry_after\": -1}", "retry_after must be"),
    (b"{\"status\": 503, \"retry_after\": 1.5}", "retry_after must be"),
    (b"{\"status\": 503, \"count\": 0}", "count must be"),
    (b"{\"status\": 503, \"reset\": true}", "unknown field \"reset\""),
])
def test_fault_bad_bodies_are_400(instances, body, message):
    admin_port = instances.admin_ports[1]
    status, answer = admin(admin_port, "PUT", "/mock/fault", body)
    assert status == 400 and message in answer["error"], answer
    assert admin(admin_port, "GET", "/mock/fault") == (200, {"mode": "none"})


def test_fault_route_methods_and_paths(instances):
    admin_port = instances.admin_ports[1]
    assert admin(admin_port, "POST", "/mock/fault", {"status": 503})[0] == 405
    assert admin(admin_port, "PATCH", "/mock/fault", {"status": 503})[0] == 405
    assert admin(admin_port, "GET", "/mock/nothing")[0] == 404
    assert admin(admin_port, "GET", "/mock/fault") == (200, {"mode": "none"})
    assert request(connect(instances.mock_ports[1]), "POST", CHAT, chat())[0] == 200
