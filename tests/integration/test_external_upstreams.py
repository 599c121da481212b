"""The connector against upstreams the project did not write: nginx serving
canned SSE and JSON over HTTP/1.1 chunked coding, in clear and over TLS 1.3,
and a WebSocket server from Debian's python3-websockets.  The mock shares
the connector's parsers; these do not, so a bug the two share cannot hide
here.  What the client gets through the whole mesh must be the canned
events exactly, or their assembly."""
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from meshlib import CHAT, Mesh, _port_free

from test_tls import make_ca, make_cert

HERE = Path(__file__).resolve().parent
NGINX = "/usr/sbin/nginx"

CHUNKS = [
    {"id": "ext-1", "object": "chat.completion.chunk", "created": 1767225600, "model": "deepseek-chat",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                  "finish_reason": None}]},
    {"id": "ext-1", "object": "chat.completion.chunk", "created": 1767225600, "model": "deepseek-chat",
     "choices": [{"index": 0, "delta": {"content": "Bonjour, "}, "logprobs": None, "finish_reason": None}]},
    {"id": "ext-1", "object": "chat.completion.chunk", "created": 1767225600, "model": "deepseek-chat",
     "choices": [{"index": 0, "delta": {"content": "ça va ? 😀"}, "logprobs": None, "finish_reason": None}]},
    {"id": "ext-1", "object": "chat.completion.chunk", "created": 1767225600, "model": "deepseek-chat",
     "choices": [{"index": 0, "delta": {"content": ""}, "logprobs": None, "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}},
]
EVENTS = [json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in CHUNKS]
SSE = "".join("data: %s\n\n" % e for e in EVENTS) + ": keep-alive\n\ndata: [DONE]\n\n"
ANSWER = {"id": "ext-2", "object": "chat.completion", "created": 1767225600, "model": "deepseek-chat",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "Bonjour, ça va ? 😀"},
                       "logprobs": None, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}


def _free_port():
    for port in range(24000, 32000, 7):
        if _port_free(port):
            return port
    raise RuntimeError("no free port")


def _nginx_literal(text):
    return text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory):
    """nginx (clear and TLS) and the WebSocket server, on loopback."""
    assert os.path.exists(NGINX), "nginx is installed by scripts/deps --test"
    base = tmp_path_factory.mktemp("upstreams")
    make_ca(base, "ca")
    make_cert(base, "ca", "server")
    plain, tls, ws = _free_port(), None, None
    tls = next(p for p in range(plain + 1, plain + 200) if _port_free(p))
    ws = next(p for p in range(tls + 1, tls + 200) if _port_free(p))
    # Content-Length is removed by the sub filter, so nginx sends chunked
    chunked = ("sub_filter_types text/event-stream application/json; sub_filter_once off; "
               "sub_filter 'NEVER-IN-A-BODY' '';")
    locations = """
        location /sse/v1/chat/completions {
            default_type text/event-stream; %s
            return 200 '%s';
        }
        location /json/v1/chat/completions {
            default_type application/json; %s
            return 200 '%s';
        }""" % (chunked, _nginx_literal(SSE), chunked, _nginx_literal(json.dumps(ANSWER, ensure_ascii=False)))
    (base / "nginx.conf").write_text("""
daemon off; worker_processes 1; pid %(dir)s/nginx.pid; error_log %(dir)s/error.log;
events { worker_connections 64; }
http {
    access_log off; client_body_temp_path %(dir)s;
    server { listen 127.0.0.1:%(plain)d; %(locations)s }
    server {
        listen 127.0.0.1:%(tls)d ssl;
        ssl_certificate %(dir)s/server.pem; ssl_certificate_key %(dir)s/server.key;
        ssl_protocols TLSv1.3;
        %(locations)s
    }
}
""" % {"dir": base, "plain": plain, "tls": tls, "locations": locations})
    nginx = subprocess.Popen([NGINX, "-c", str(base / "nginx.conf"), "-p", str(base)],
                             stderr=subprocess.PIPE)
    (base / "answer.sse").write_text(SSE)
    server = subprocess.Popen(["/usr/bin/python3", str(HERE / "ws_upstream.py"), str(ws), "7",
                               str(base / "answer.sse")], stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "listening"
    deadline = time.time() + 5
    while _port_free(plain) and time.time() < deadline:
        time.sleep(0.05)
    yield {"plain": plain, "tls": tls, "ws": ws, "ca": str(base / "ca.pem"), "dir": base}
    nginx.terminate()
    server.terminate()
    nginx.wait(5)
    server.wait(5)


@pytest.fixture(scope="module")
def ext_mesh(upstreams, tmp_path_factory):
    none = {"type": "none"}
    models = [
        {"name": "ext-sse", "endpoint": "http://127.0.0.1:%d/sse/v1/chat/completions" % upstreams["plain"],
         "auth": none},
        {"name": "ext-json", "endpoint": "http://127.0.0.1:%d/json/v1/chat/completions" % upstreams["plain"],
         "auth": none},
        {"name": "ext-sse-tls", "endpoint": "https://127.0.0.1:%d/sse/v1/chat/completions" % upstreams["tls"],
         "auth": none, "ca_file": upstreams["ca"]},
        {"name": "ext-json-tls", "endpoint": "https://127.0.0.1:%d/json/v1/chat/completions" % upstreams["tls"],
         "auth": none, "ca_file": upstreams["ca"]},
        {"name": "ext-ws", "endpoint": "ws://127.0.0.1:%d/v1/chat/completions" % upstreams["ws"],
         "auth": none, "stream_config": {"chunk_size": 7, "delimiter": "\n\n"}},
    ]
    mesh = Mesh(tmp_path_factory.mktemp("mesh"))
    # Loopback upstreams of our own: not moved with the mesh's ports
    mesh.config["models"].extend(models)
    mesh.config_path.write_text(json.dumps(mesh.config, indent=1))
    mesh.up()
    yield mesh
    mesh.down()


def _chat(model, stream):
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "salut"}]}


@pytest.mark.parametrize("model", ["ext-sse", "ext-sse-tls", "ext-ws"])
def test_stream_arrives_event_for_event(ext_mesh, model):
    stream = ext_mesh.stream(_chat(model, True))
    stream.read_all()
    events = [e for _, e in stream.events]
    data = [e[len("data: "):] for e in events if e.startswith("data: ")]
    assert stream.status == 200, stream.body
    assert data == EVENTS + ["[DONE]"], stream.body
    assert ": keep-alive" in events


@pytest.mark.parametrize("model", ["ext-json", "ext-json-tls"])
def test_json_body_arrives_whole(ext_mesh, model):
    status, headers, body = ext_mesh.chat(_chat(model, False))
    assert status == 200, body
    assert body == ANSWER
    assert headers["x-seekmesh-model"] == model


def test_stream_assembled_for_a_non_stream_client(ext_mesh):
    # The WebSocket upstream only streams: the connector assembles the answer
    status, _, body = ext_mesh.chat(_chat("ext-ws", False))
    assert status == 200, body
    message = body["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Bonjour, ça va ? 😀"}
    assert body["usage"]["total_tokens"] == 12 and body["id"] == "ext-1"
    assert body["choices"][0]["finish_reason"] == "stop"


def test_requests_reach_the_websocket_server_as_sent(ext_mesh, upstreams):
    requests = (upstreams["dir"] / "answer.sse.requests").read_text().splitlines()
    assert requests and all(json.loads(r)["messages"][0]["content"] == "salut" for r in requests)
