"""What the connector owes the upstream: keep-alive reuse, its own
credentials (never the client's), and WebSocket pools that come back after
the upstream restarts."""
import time

from meshlib import echo

UPSTREAM_KEY = "sk-upstream-secret-0123"


def user(text, model="deepseek-chat", **extra):
    return dict({"model": model, "messages": [{"role": "user", "content": text}]}, **extra)


def test_keep_alive_connections_reused(make_mesh):
    mesh = make_mesh()
    before = mesh.metric("mock", 'seekmesh_mock_connections_total{transport="http"}')
    for i in range(20):
        status, _, body = mesh.chat(user("reuse %d" % i))
        assert status == 200
        stream = mesh.stream(user("reuse stream %d" % i))
        stream.read_all()
        assert stream.content() == echo("reuse stream %d" % i)
        stream.close()
    opened = mesh.metric("mock", 'seekmesh_mock_connections_total{transport="http"}') - before
    # 40 sequential requests; the WebSocket pool's own connections count as
    # http accepts too (before their upgrade), so allow those
    ws_pool = mesh.config["connector"]["ws_pool_size"]
    assert opened <= 1 + ws_pool, opened
    assert mesh.metric("connector", "seekmesh_connector_upstream_connections_reused_total") >= 39


def test_upstream_credentials_are_the_connectors(make_mesh):
    mesh = make_mesh(env={"SEEKMESH_MOCK_API_KEY": UPSTREAM_KEY})
    # the mock now refuses anything but the upstream key: a 200 proves the
    # connector sent its own key, and not the client's sk-seekmesh-dev
    for model in ("deepseek-chat", "deepseek-chat-ws"):
        status, _, body = mesh.chat(user("authorised", model))
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] == "Echo: authorised"
    assert mesh.metric("mock", "seekmesh_mock_auth_failures_total") == 0


def test_wrong_upstream_credentials_are_a_gateway_error(make_mesh):
    mesh = make_mesh(env={"SEEKMESH_MOCK_API_KEY": UPSTREAM_KEY})
    config = mesh.config
    # a model whose key variable is not set: the upstream says 401, which is
    # the gateway's problem (502), not the client's (it must not see 401)
    assert "SEEKMESH_UPSTREAM_UNSET_KEY" not in mesh.env
    models = config["models"]
    models.append({"name": "no-key", "endpoint": models[0]["endpoint"], "upstream_model": "deepseek-chat",
                   "auth": {"type": "api_key", "key_env": "SEEKMESH_UPSTREAM_UNSET_KEY"}})
    mesh.down()
    mesh.config_path.write_text(__import__("json").dumps(config))
    mesh.up()
    status, headers, body = mesh.chat(user("x", "no-key"))
    assert status == 502 and body["error"]["code"] == "upstream_auth_failed"
    # an operator has to fix the key: the SDKs must not retry it for nothing
    assert headers.get("x-should-retry") == "false"


def test_websocket_pool_reconnects_after_upstream_restart(make_mesh):
    mesh = make_mesh()
    status, _, _ = mesh.chat(user("before", "deepseek-chat-ws"))
    assert status == 200
    mesh.kill("mock-0")
    mesh.wait_healthy("mock", timeout=5)
    # the pool reconnects with backoff; requests succeed again shortly
    deadline = time.time() + 6
    while True:
        status, _, body = mesh.chat(user("after", "deepseek-chat-ws"))
        if status == 200:
            break
        assert status == 502, body
        assert time.time() < deadline, "the WebSocket pool did not come back"
        time.sleep(0.2)
    assert body["choices"][0]["message"]["content"] == "Echo: after"
    stream = mesh.stream(user("after stream", "deepseek-chat-ws"))
    stream.read_all()
    assert stream.content() == "Echo: after stream"
    stream.close()
