"""The live registry: the router's admin API (/admin/models, /admin/keys,
/admin/reload), its store in Redis, SIGHUP, and seekmeshctl, against a real
mesh of processes.

What every test proves is a real outcome: a model added through the API is
served by the ingress (so the router admitted it and the connector got it in
REGISTRY), a removed one is a 404, a key made through the API authenticates
and one revoked no longer does, Redis holds digests and never plain keys,
a second router and a restarted one see the same registry.

Most tests share one module-scoped mesh and use names of their own; tests
that need another setup (two routers, no admin token, a frozen Redis, a
rewritten config file, restarts, a changed file key) build theirs with
make_mesh."""
import copy
import hashlib
import json
import os
import signal
import socket
import subprocess
import time

from meshlib import ADMIN_TOKEN, BIN, KEY, echo

CTL = BIN / "seekmeshctl"
MOCK_CHAT = "http://127.0.0.1:9100/v1/chat/completions"
CONFIG_MODELS = ("deepseek-chat", "deepseek-reasoner", "deepseek-chat-ws")


# --- helpers ------------------------------------------------------------------

def ask(mesh, model, text="hello", key=KEY):
    """A non-stream chat: (status, headers, parsed body)."""
    return mesh.chat({"model": model, "messages": [{"role": "user", "content": text}]}, key=key)


def assert_echo(mesh, model, text="hello", key=KEY):
    status, headers, body = ask(mesh, model, text, key)
    assert status == 200, (model, status, body)
    assert body["choices"][0]["message"]["content"] == echo(text), body
    return headers, body


def error_of(body):
    """The OpenAI envelope's error object, checked for its shape."""
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    error = body["error"]
    for field in ("message", "type", "code"):
        assert isinstance(error.get(field), str) and error[field], (field, body)
    return error


def mock_entry(mesh, **fields):
    """A model entry served by the mesh's mock, without upstream credentials."""
    entry = {"type": "llm", "endpoint": mesh.shift_url(MOCK_CHAT), "auth": {"type": "none"},
             "max_concurrency": 16}
    entry.update(fields)
    return entry


def wait_for(predicate, timeout, step=0.02):
    """Polls predicate until it returns something true; returns (value, seconds)."""
    started = time.time()
    value = None
    while time.time() - started < timeout:
        value = predicate()
        if value:
            return value, time.time() - started
        time.sleep(step)
    return value, time.time() - started


def listed_models(mesh, key=KEY):
    """The ids GET /v1/models shows this key through the ingress."""
    status, _, body = mesh.request("GET", "/v1/models", key=key)
    assert status == 200, body
    return [m["id"] for m in json.loads(body)["data"]]


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def redis_hash(mesh, name):
    """HGETALL as {field: value}."""
    lines = mesh.redis_cli("HGETALL", name).splitlines()
    return dict(zip(lines[0::2], lines[1::2]))


def redis_up(mesh, instances=(0,)):
    """Waits until each router's command connection to Redis is up.  A
    router is ready (/readyz) without Redis (it serves the file's registry),
    so right after `up` a write may still meet "Redis is unavailable"."""
    for i in instances:
        mesh.wait_metric("router", "seekmesh_redis_up", lambda v: v == 1, timeout=5, instance=i)
    return mesh


def resp(*args):
    """One Redis command in RESP."""
    out = b"*%d\r\n" % len(args)
    for arg in args:
        arg = arg.encode() if isinstance(arg, str) else arg
        out += b"$%d\r\n%s\r\n" % (len(arg), arg)
    return out


def ctl(mesh, *args, token=ADMIN_TOKEN):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
    env["SEEKMESH_ADMIN_TOKEN"] = token
    host, port = mesh.admin_address("router")
    return subprocess.run([str(CTL), "--admin", "%s:%d" % (host, port), *args], env=env,
                          capture_output=True, text=True, timeout=10)


# --- 1. auth --------------------------------------------------------------------

def test_admin_api_requires_the_token(mesh):
    for token in (None, "wrong-token", ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1]):
        for method, path, body in (("GET", "/admin/models", None), ("GET", "/admin/keys", None),
                                   ("PUT", "/admin/models/intruder", mock_entry(mesh)),
                                   ("POST", "/admin/reload", None)):
            status, reply = mesh.admin_call(method, path, body, token=token)
            assert status == 401, (token, method, path, status, reply)
            error = error_of(reply)
            assert error["type"] == "authentication_error" and error["code"] == "invalid_admin_token"
    # nothing got in
    assert mesh.admin_call("GET", "/admin/models/intruder")[0] == 404
    assert mesh.redis_cli("HEXISTS", "seekmesh:registry:models", "intruder") == "0"


def test_admin_api_off_without_the_env_var(make_mesh):
    mesh = make_mesh(env={"SEEKMESH_ADMIN_TOKEN": ""})
    for token in (ADMIN_TOKEN, "", None):
        status, reply = mesh.admin_call("GET", "/admin/models", token=token)
        assert status == 403, (token, status, reply)
        error = error_of(reply)
        assert "SEEKMESH_ADMIN_TOKEN" in error["message"], error
        assert error["type"] == "permission_error"
    status, reply = mesh.admin_call("PUT", "/admin/models/sneaky", mock_entry(mesh))
    assert status == 403, reply
    # the gateway itself keeps serving
    assert_echo(mesh, "deepseek-chat")


# --- 2. models --------------------------------------------------------------------

def test_models_list_shows_the_config(mesh):
    status, reply = mesh.admin_call("GET", "/admin/models")
    assert status == 200, reply
    assert reply["object"] == "list" and reply["version"]
    assert "aliases" in reply and isinstance(reply["aliases"], dict)
    models = {entry["name"]: entry for entry in reply["data"]}
    for name in CONFIG_MODELS:
        assert models[name]["source"] == "config", models[name]
    assert models["deepseek-chat"]["aliases"] == ["deepseek-v4-flash"]
    assert models["deepseek-reasoner"]["aliases"] == ["deepseek-v4-pro"]
    assert models["deepseek-chat-ws"]["endpoint"].startswith("ws://")
    status, one = mesh.admin_call("GET", "/admin/models/deepseek-chat")
    assert status == 200 and one["source"] == "config" and one["name"] == "deepseek-chat"


def test_model_put_patch_delete_through_the_ingress(mesh):
    redis_up(mesh)
    name = "reg-life"
    assert ask(mesh, name)[0] == 404
    status, reply = mesh.admin_call("PUT", "/admin/models/" + name, mock_entry(mesh))
    assert status == 201, reply
    assert reply["name"] == name and reply["source"] == "admin"
    # the router admits it and the connector (REGISTRY) knows where it lives
    headers, body = assert_echo(mesh, name, "first call")
    assert headers["x-seekmesh-model"] == name
    assert body["model"] == name          # no upstream_model: sent as it is
    status, entry = mesh.admin_call("GET", "/admin/models/" + name)
    assert status == 200 and entry["source"] == "admin", entry
    stored = json.loads(mesh.redis_cli("HGET", "seekmesh:registry:models", name))
    assert stored["endpoint"] == mock_entry(mesh)["endpoint"] and stored["name"] == name
    assert name in listed_models(mesh)

    # PATCH: a merge patch; the connector gets the change too: with
    # upstream_model deepseek-reasoner the mock answers as a reasoner
    status, reply = mesh.admin_call("PATCH", "/admin/models/" + name,
                                    {"upstream_model": "deepseek-reasoner", "max_concurrency": 7})
    assert status == 200, reply
    status, entry = mesh.admin_call("GET", "/admin/models/" + name)
    assert entry["upstream_model"] == "deepseek-reasoner" and entry["max_concurrency"] == 7, entry
    assert entry["endpoint"] == mock_entry(mesh)["endpoint"]       # untouched fields stay
    headers, body = assert_echo(mesh, name, "second call")
    assert headers["x-seekmesh-model"] == name
    assert body["choices"][0]["message"]["reasoning_content"] == "Thinking about: second call", body
    # PUT replaces the whole entry: the upstream_model is gone again
    status, reply = mesh.admin_call("PUT", "/admin/models/" + name, mock_entry(mesh))
    assert status == 200, reply
    assert "upstream_model" not in mesh.admin_call("GET", "/admin/models/" + name)[1]
    _, body = assert_echo(mesh, name, "third call")
    assert "reasoning_content" not in body["choices"][0]["message"], body

    status, reply = mesh.admin_call("DELETE", "/admin/models/" + name)
    assert status == 200 and reply == {"name": name, "deleted": True}, reply
    status, headers, body = ask(mesh, name)
    assert status == 404 and error_of(body)["code"] == "model_not_found", body
    assert mesh.admin_call("GET", "/admin/models/" + name)[0] == 404
    # an admin-only model leaves no trace in Redis
    assert mesh.redis_cli("HEXISTS", "seekmesh:registry:models", name) == "0"
    assert name not in [m["name"] for m in mesh.admin_call("GET", "/admin/models")[1]["data"]]
    assert name not in listed_models(mesh)


def test_model_post_creates_only(mesh):
    redis_up(mesh)
    name = "reg-posted"
    status, reply = mesh.admin_call("POST", "/admin/models", mock_entry(mesh, name=name))
    assert status == 201 and reply["name"] == name, reply
    assert_echo(mesh, name)
    for existing in (name, "deepseek-chat"):
        status, reply = mesh.admin_call("POST", "/admin/models", mock_entry(mesh, name=existing))
        assert status == 409 and error_of(reply)["code"] == "already_exists", reply
        assert existing in error_of(reply)["message"]
    assert mesh.admin_call("GET", "/admin/models/deepseek-chat")[1]["source"] == "config"
    assert mesh.admin_call("DELETE", "/admin/models/" + name)[0] == 200


def test_delete_config_model_leaves_a_tombstone(mesh):
    redis_up(mesh)
    name = "deepseek-reasoner"
    status, original = mesh.admin_call("GET", "/admin/models/" + name)
    assert status == 200 and original["source"] == "config"
    try:
        status, reply = mesh.admin_call("DELETE", "/admin/models/" + name)
        assert status == 200, reply
        assert mesh.redis_cli("HGET", "seekmesh:registry:models", name) == "null"
        for asked in (name, "deepseek-v4-pro"):            # the alias went with it
            status, _, body = ask(mesh, asked)
            assert status == 404 and error_of(body)["code"] == "model_not_found", (asked, body)
        assert mesh.admin_call("GET", "/admin/models/" + name)[0] == 404
        listed = [m["name"] for m in mesh.admin_call("GET", "/admin/models")[1]["data"]]
        assert name not in listed and "deepseek-chat" in listed
        assert_echo(mesh, "deepseek-chat")                 # the others are untouched
        # PUT brings it back (as an admin entry)
        entry = {k: v for k, v in original.items() if k != "source"}
        status, reply = mesh.admin_call("PUT", "/admin/models/" + name, entry)
        assert status == 201, reply
        assert mesh.admin_call("GET", "/admin/models/" + name)[1]["source"] == "admin"
        assert_echo(mesh, "deepseek-v4-pro")
    finally:
        # back to the file's entry for the other tests: drop the overlay
        # field and announce it, as a router's write does
        mesh.redis_cli("HDEL", "seekmesh:registry:models", name)
        mesh.redis_cli("PUBLISH", "seekmesh:registry", name)
        restored, _ = wait_for(lambda: mesh.admin_call("GET", "/admin/models/" + name)[1].get(
            "source") == "config", timeout=2.0)
        assert restored
    assert_echo(mesh, "deepseek-reasoner")


def test_model_writes_are_validated(mesh):
    redis_up(mesh)
    cases = [
        # (method, path, body, expected status, code, words the message must contain)
        ("PUT", "/admin/models/reg-bad", mock_entry(mesh, endpoint="gopher://x"), 400,
         "invalid_registry", ["endpoint"]),
        ("PUT", "/admin/models/reg-bad", mock_entry(mesh, fallback="no-such-model"), 400,
         "invalid_registry", ["fallback"]),
        ("PUT", "/admin/models/reg-bad", mock_entry(mesh, name="reg-other"), 400,
         "name_mismatch", ["reg-other", "reg-bad"]),
        ("PUT", "/admin/models/reg-bad", "{not json", 400, "invalid_json", ["JSON"]),
        ("PUT", "/admin/models/reg-bad", "[1, 2]", 400, "invalid_json", ["object"]),
        ("POST", "/admin/models", {"endpoint": mock_entry(mesh)["endpoint"]}, 400,
         "invalid_name", ["name"]),
        ("PUT", "/admin/models/bad%20name", mock_entry(mesh), 400, "invalid_name", []),
        ("GET", "/admin/models/reg-nowhere", None, 404, "model_not_found", ["reg-nowhere"]),
        ("PATCH", "/admin/models/reg-nowhere", {"max_concurrency": 2}, 404, "model_not_found", []),
        ("DELETE", "/admin/models/reg-nowhere", None, 404, "model_not_found", []),
        # a PATCH is checked like a PUT; a config model stays as it was
        ("PATCH", "/admin/models/deepseek-chat", {"endpoint": "ftp://x/"}, 400,
         "invalid_registry", ["endpoint"]),
    ]
    for method, path, body, want, code, words in cases:
        status, reply = mesh.admin_call(method, path, body)
        assert status == want, (method, path, body, status, reply)
        error = error_of(reply)
        assert error["code"] == code, (method, path, reply)
        for word in words:
            assert word in error["message"], (method, path, word, reply)
    assert mesh.redis_cli("HEXISTS", "seekmesh:registry:models", "reg-bad") == "0"
    assert mesh.admin_call("GET", "/admin/models/deepseek-chat")[1]["source"] == "config"

    # a fallback that exists is fine; its target cannot then be removed
    assert mesh.admin_call("PUT", "/admin/models/reg-target", mock_entry(mesh))[0] == 201
    status, reply = mesh.admin_call("PUT", "/admin/models/reg-user",
                                    mock_entry(mesh, fallback="reg-target"))
    assert status == 201, reply
    status, reply = mesh.admin_call("DELETE", "/admin/models/reg-target")
    assert status == 400 and "fallback" in error_of(reply)["message"], reply
    assert_echo(mesh, "reg-target")
    assert mesh.admin_call("DELETE", "/admin/models/reg-user")[0] == 200
    assert mesh.admin_call("DELETE", "/admin/models/reg-target")[0] == 200


# --- 3. keys ------------------------------------------------------------------------

def test_key_lifecycle(mesh):
    redis_up(mesh)
    status, made = mesh.admin_call("POST", "/admin/keys", {"tenant": "t1", "rpm": 100})
    assert status == 201, made
    secret, key_id = made["key"], made["id"]
    assert secret.startswith("sk-") and len(secret) >= 32, made
    assert key_id and made["tenant"] == "t1" and made["rpm"] == 100 and made["source"] == "admin"
    assert made["fingerprint"] == sha256(secret)[:16], made
    assert "key_sha256" not in made

    # Redis has the digest, never the key
    raw = mesh.redis_cli("HGETALL", "seekmesh:registry:keys")
    assert secret not in raw and secret[3:] not in raw
    stored = json.loads(redis_hash(mesh, "seekmesh:registry:keys")[key_id])
    assert stored["key_sha256"] == sha256(secret) and "key" not in stored, stored

    assert_echo(mesh, "deepseek-chat", key=secret)
    # the list shows fingerprints only: not this key, not the file's dev key
    status, listing = mesh.admin_call("GET", "/admin/keys")
    assert status == 200
    text = json.dumps(listing)
    assert secret not in text and KEY not in text and sha256(secret) not in text
    keys = {k["id"]: k for k in listing["data"]}
    assert keys[key_id]["fingerprint"] == made["fingerprint"] and keys[key_id]["rpm"] == 100
    assert keys["dev"]["source"] == "config" and keys["dev"]["fingerprint"] == sha256(KEY)[:16]
    assert all("key" not in k and "key_sha256" not in k for k in listing["data"]), listing
    status, one = mesh.admin_call("GET", "/admin/keys/" + key_id)
    assert status == 200 and secret not in json.dumps(one) and one["tenant"] == "t1"

    # limited to the WebSocket model: deepseek-chat is forbidden
    status, reply = mesh.admin_call("PATCH", "/admin/keys/" + key_id, {"models": ["deepseek-chat-ws"]})
    assert status == 200 and "key" not in reply, reply
    for model in ("deepseek-chat", "deepseek-v4-flash"):     # nor through its alias
        status, _, body = ask(mesh, model, key=secret)
        assert status == 403 and error_of(body)["code"] == "model_not_allowed", (model, body)
    assert_echo(mesh, "deepseek-chat-ws", key=secret)
    assert listed_models(mesh, secret) == ["deepseek-chat-ws"]
    assert_echo(mesh, "deepseek-chat")                  # the dev key is not limited
    stored = json.loads(redis_hash(mesh, "seekmesh:registry:keys")[key_id])
    assert stored["models"] == ["deepseek-chat-ws"] and stored["key_sha256"] == sha256(secret)

    # a new secret for this (admin) key: the old one stops working
    rotated = "sk-reg-rotated-0001"
    status, reply = mesh.admin_call("PATCH", "/admin/keys/" + key_id, {"key": rotated})
    assert status == 200 and reply["key"] == rotated, reply
    assert reply["fingerprint"] == sha256(rotated)[:16] and reply["models"] == ["deepseek-chat-ws"]
    assert_echo(mesh, "deepseek-chat-ws", key=rotated)
    assert ask(mesh, "deepseek-chat-ws", key=secret)[0] == 401
    assert rotated not in mesh.redis_cli("HGETALL", "seekmesh:registry:keys")
    secret = rotated

    status, reply = mesh.admin_call("DELETE", "/admin/keys/" + key_id)
    assert status == 200 and reply == {"id": key_id, "deleted": True}, reply
    status, _, body = ask(mesh, "deepseek-chat-ws", key=secret)
    assert status == 401, body
    error_of(body)
    assert mesh.admin_call("GET", "/admin/keys/" + key_id)[0] == 404
    assert mesh.redis_cli("HEXISTS", "seekmesh:registry:keys", key_id) == "0"


def test_key_given_explicitly_and_refusals(mesh):
    redis_up(mesh)
    secret = "sk-reg-explicit-0001"
    status, made = mesh.admin_call("POST", "/admin/keys",
                                   {"id": "reg-explicit", "key": secret, "tenant": "t2"})
    assert status == 201, made
    assert made["id"] == "reg-explicit" and made["key"] == secret
    assert secret not in mesh.redis_cli("HGETALL", "seekmesh:registry:keys")
    assert_echo(mesh, "deepseek-chat", key=secret)

    cases = [
        ({"tenant": "t", "key": "sk-1234"}, 400, "invalid_key", "8"),
        ({"id": "reg-explicit", "tenant": "t"}, 409, "already_exists", "reg-explicit"),
        ({"id": "dev", "tenant": "t"}, 409, "already_exists", "dev"),
        ({"tenant": "t", "key": KEY}, 400, "invalid_registry", "twice"),     # the same secret
        ({"tenant": "t", "rpm": -1}, 400, "invalid_registry", "rpm"),
        ({"tenant": "t", "models": ["no-such-model"]}, 400, "invalid_registry", "unknown model"),
        ({"tenant": "t", "key": secret + "x", "key_sha256": sha256("x")}, 400, "invalid_key", "key"),
        ({"id": "bad id!", "tenant": "t"}, 400, "invalid_id", "id"),
    ]
    for body, want, code, word in cases:
        status, reply = mesh.admin_call("POST", "/admin/keys", body)
        assert status == want, (body, status, reply)
        error = error_of(reply)
        assert error["code"] == code and word in error["message"], (body, reply)
    status, reply = mesh.admin_call("POST", "/admin/keys", "tenant=t")
    assert status == 400 and error_of(reply)["code"] == "invalid_json"
    status, reply = mesh.admin_call("PATCH", "/admin/keys/reg-nowhere", {"rpm": 1})
    assert status == 404 and error_of(reply)["code"] == "key_not_found"
    assert mesh.admin_call("DELETE", "/admin/keys/reg-explicit")[0] == 200
    assert ask(mesh, "deepseek-chat", key=secret)[0] == 401


def test_key_post_on_an_id_path(mesh):
    """POST /admin/keys/ID: the header documents POST on /admin/keys only
    (the 405 message says "POST (on /admin/keys)"), and for models
    POST /admin/models/NAME creates NAME.  The router instead ignores the
    id in the path and creates a key under a random id."""
    redis_up(mesh)
    status, reply = mesh.admin_call("POST", "/admin/keys/reg-path-id", {"tenant": "t"})
    if status == 201 and reply.get("id") != "reg-path-id":
        mesh.admin_call("DELETE", "/admin/keys/" + reply["id"])
    assert status == 405 or (status == 201 and reply["id"] == "reg-path-id"), (
        "POST /admin/keys/reg-path-id answered %d and made key id %r" % (status, reply.get("id")))


def test_patch_key_of_the_file_changes_its_secret(make_mesh):
    """PATCH /admin/keys/ID {"key": NEW} on a key the config file holds in
    plain ("dev"): the answer shows NEW, so NEW must authenticate and the old
    secret must not."""
    mesh = redis_up(make_mesh())
    new = "sk-reg-rotated-dev-key"
    status, reply = mesh.admin_call("PATCH", "/admin/keys/dev", {"key": new})
    assert status == 200 and reply["key"] == new, reply
    stored = json.loads(redis_hash(mesh, "seekmesh:registry:keys")["dev"])
    assert new not in json.dumps(stored)
    new_status = ask(mesh, "deepseek-chat", key=new)[0]
    old_status = ask(mesh, "deepseek-chat", key=KEY)[0]
    assert (stored.get("key_sha256"), reply["fingerprint"], new_status, old_status) == (
        sha256(new), sha256(new)[:16], 200, 401), (
        "the rotated key was not stored: Redis has the digest of %s, the reply's fingerprint is "
        "the %s key's; chat with the new key -> %d, with the old key -> %d" % (
            "the new key" if stored.get("key_sha256") == sha256(new) else "the OLD key",
            "new" if reply["fingerprint"] == sha256(new)[:16] else "OLD", new_status, old_status))


# --- 4. two routers -------------------------------------------------------------------

def test_two_routers_share_the_registry(make_mesh):
    mesh = redis_up(make_mesh({"mesh": {"instances": {"router": 2}}}), (0, 1))
    name = "reg-shared"
    assert mesh.admin_call("GET", "/admin/models/" + name, instance=1)[0] == 404
    status, reply = mesh.admin_call("PUT", "/admin/models/" + name, mock_entry(mesh), instance=0)
    assert status == 201, reply
    seen, _ = wait_for(lambda: mesh.admin_call("GET", "/admin/models/" + name, instance=1)[0] == 200,
                          timeout=1.0)
    assert seen, "router-1 did not see the model within 1 s"
    status, listing = mesh.admin_call("GET", "/admin/models", instance=1)
    entry = {m["name"]: m for m in listing["data"]}[name]
    assert entry["source"] == "admin"
    assert listing["version"] == mesh.admin_call("GET", "/admin/models", instance=0)[1]["version"]

    before = [mesh.metric("router", 'seekmesh_router_admitted_total{key="dev",model="%s"}' % name, i)
              for i in (0, 1)]
    for i in range(10):
        assert_echo(mesh, name, "request %d" % i)
    served = [mesh.metric("router", 'seekmesh_router_admitted_total{key="dev",model="%s"}' % name, i)
              - before[i] for i in (0, 1)]
    assert sum(served) == 10 and min(served) >= 1, served     # both routers served the model

    # and the other way: a key made on router-1 works on both, and removal too
    status, made = mesh.admin_call("POST", "/admin/keys", {"tenant": "both"}, instance=1)
    assert status == 201, made
    assert wait_for(lambda: mesh.admin_call("GET", "/admin/keys/" + made["id"], instance=0)[0] == 200,
                    timeout=1.0)[0]
    for i in range(4):
        assert_echo(mesh, name, "keyed %d" % i, key=made["key"])
    assert mesh.admin_call("DELETE", "/admin/models/" + name, instance=1)[0] == 200
    gone, _ = wait_for(lambda: mesh.admin_call("GET", "/admin/models/" + name, instance=0)[0] == 404,
                       timeout=1.0)
    assert gone
    for i in range(4):
        assert ask(mesh, name)[0] == 404


# --- 5. persistence -----------------------------------------------------------------------

def test_registry_survives_router_and_connector_restarts(make_mesh):
    mesh = redis_up(make_mesh())
    name = "reg-kept"
    assert mesh.admin_call("PUT", "/admin/models/" + name, mock_entry(mesh))[0] == 201
    status, made = mesh.admin_call("POST", "/admin/keys", {"id": "reg-kept-key", "tenant": "k"})
    assert status == 201
    assert mesh.admin_call("DELETE", "/admin/models/deepseek-reasoner")[0] == 200
    assert_echo(mesh, name, key=made["key"])
    router_pid = mesh.pid("router-0")

    mesh.mesh("restart", "router")
    assert mesh.pid("router-0") != router_pid
    mesh.wait_ready("router")       # ready: the registry has been read from Redis
    status, entry = mesh.admin_call("GET", "/admin/models/" + name)
    assert status == 200 and entry["source"] == "admin", entry
    assert mesh.admin_call("GET", "/admin/keys/reg-kept-key")[1]["source"] == "admin"
    headers, _ = assert_echo(mesh, name, "after the router restart", key=made["key"])
    assert headers["x-seekmesh-model"] == name
    assert ask(mesh, "deepseek-reasoner")[0] == 404          # the tombstone too

    # a restarted connector gets the registry when it joins
    mesh.mesh("restart", "connector")
    mesh.wait_ready("router")
    assert_echo(mesh, name, "after the connector restart", key=made["key"])


def test_change_announced_while_the_command_connection_is_down(make_mesh):
    """DESIGN: every router re-reads the registry on the seekmesh:registry
    message "and after each reconnect".  Here the router's command
    connection is dropped (CLIENT KILL of the normal clients; its pub/sub
    connection stays) and, in the same breath, another writer stores a model
    and announces it, as a second router's admin write does.  The router
    must end up with that model: it is in Redis and was announced."""
    mesh = redis_up(make_mesh())
    name = "reg-announced"
    entry = json.dumps(mock_entry(mesh, name=name))
    with socket.create_connection(("127.0.0.1", mesh.redis_port()), timeout=5) as redis:
        redis.sendall(resp("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes") +
                      resp("HSET", "seekmesh:registry:models", name, entry) +
                      resp("PUBLISH", "seekmesh:registry", name))
        replies = b""
        while replies.count(b"\r\n") < 3:
            replies += redis.recv(1024)
    killed, stored, receivers = replies.split(b"\r\n")[:3]
    assert int(killed[1:]) >= 1, replies        # the router's command connection
    assert stored == b":1" and int(receivers[1:]) >= 1, replies    # the router heard it
    mesh.wait_metric("router", "seekmesh_redis_up", lambda v: v == 1, timeout=3)
    seen, _ = wait_for(lambda: mesh.admin_call("GET", "/admin/models/" + name)[0] == 200,
                          timeout=3.0)
    in_redis = name in redis_hash(mesh, "seekmesh:registry:models")
    status = ask(mesh, name)[0]
    assert seen and status == 200, (
        "3 s after the announcement (Redis reconnected, the model in Redis: %s) the router "
        "still has no model %r: GET /admin/models/%s -> 404, chat -> %d" % (in_redis, name, name, status))


# --- 6. Redis frozen ------------------------------------------------------------------------

def test_writes_refused_quickly_while_redis_is_frozen(make_mesh):
    mesh = redis_up(make_mesh())
    # the redis-server itself: mesh.pid("redis-0") is the scripts/seekmesh-redis
    # wrapper, which does not pass SIGSTOP on (stopping it freezes nothing)
    redis = mesh.redis_server_pid()
    assert open("/proc/%d/comm" % redis).read().startswith("redis-server")
    os.kill(redis, signal.SIGSTOP)
    try:
        for i in range(3):
            started = time.time()
            status, reply = mesh.admin_call("PUT", "/admin/models/reg-frozen-%d" % i, mock_entry(mesh))
            took = time.time() - started
            assert status == 503, reply
            assert error_of(reply)["code"] == "registry_unavailable", reply
            assert took < 1.0, took
            status, reply = mesh.admin_call("POST", "/admin/keys", {"tenant": "frozen"})
            assert status == 503 and error_of(reply)["code"] == "registry_unavailable", reply
            # reads and chats go on with the last registry
            assert mesh.admin_call("GET", "/admin/models")[0] == 200
            for model in CONFIG_MODELS:
                assert_echo(mesh, model, "frozen %d" % i)
    finally:
        os.kill(redis, signal.SIGCONT)
    status, reply = None, None
    started = time.time()
    while time.time() - started < 5:
        status, reply = mesh.admin_call("PUT", "/admin/models/reg-thawed", mock_entry(mesh))
        if status != 503:
            break
        time.sleep(0.1)
    assert status == 201, (time.time() - started, reply)
    assert_echo(mesh, "reg-thawed")
    # "nothing was changed": the refused writes did not land later either
    time.sleep(0.3)
    models = redis_hash(mesh, "seekmesh:registry:models")
    assert sorted(models) == ["reg-thawed"], models
    assert redis_hash(mesh, "seekmesh:registry:keys") == {}
    assert ask(mesh, "reg-frozen-0")[0] == 404


# --- 7. SIGHUP and /admin/reload ------------------------------------------------------------

def test_sighup_and_reload_reread_the_config_file(make_mesh):
    mesh = make_mesh()
    router = mesh.pid("router-0")
    original = copy.deepcopy(mesh.config)
    config = copy.deepcopy(original)
    config["models"].append({"name": "reg-hup", "type": "llm",
                             "endpoint": mesh.shift_url(MOCK_CHAT), "auth": {"type": "none"},
                             "aliases": ["reg-hup-alias"]})
    config["keys"].append({"id": "reg-hup-key", "key": "sk-reg-hup-secret", "tenant": "hup"})
    mesh.config_path.write_text(json.dumps(config, indent=1))
    assert ask(mesh, "reg-hup")[0] == 404
    os.kill(router, signal.SIGHUP)

    ok, _ = wait_for(lambda: ask(mesh, "reg-hup", key="sk-reg-hup-secret")[0] == 200, timeout=2.0)
    assert ok, "the reloaded model and key did not work within 2 s"
    headers, _ = assert_echo(mesh, "reg-hup", "hup", key="sk-reg-hup-secret")
    assert headers["x-seekmesh-model"] == "reg-hup"
    assert_echo(mesh, "reg-hup-alias", "hup alias")
    entry = mesh.admin_call("GET", "/admin/models/reg-hup")[1]
    assert entry["source"] == "config", entry
    assert mesh.admin_call("GET", "/admin/keys/reg-hup-key")[1]["source"] == "config"

    # an invalid file (a model without endpoint): refused, the router stays
    # up and keeps the registry it had
    broken = copy.deepcopy(config)
    broken["models"].append({"name": "reg-broken", "type": "llm", "auth": {"type": "none"}})
    mesh.config_path.write_text(json.dumps(broken, indent=1))
    os.kill(router, signal.SIGHUP)
    logged, _ = wait_for(lambda: "reload refused" in mesh.logs("router-0"), timeout=2.0)
    assert logged, mesh.logs("router-0")
    line = [l for l in mesh.logs("router-0").splitlines() if "reload refused" in l][-1]
    assert "endpoint" in line, line
    assert mesh.pid("router-0") == router
    assert mesh.admin_get("router", "/healthz")[0] == 200
    assert_echo(mesh, "reg-hup", "still here", key="sk-reg-hup-secret")
    assert ask(mesh, "reg-broken")[0] == 404

    # /admin/reload: the same refusal, as a 400 naming the field
    status, reply = mesh.admin_call("POST", "/admin/reload")
    assert status == 400, reply
    error = error_of(reply)
    assert error["code"] == "invalid_config"
    assert "models.%d.endpoint" % (len(broken["models"]) - 1) in error["message"], error
    assert mesh.admin_call("GET", "/admin/reload")[0] == 405
    assert_echo(mesh, "reg-hup", key="sk-reg-hup-secret")
    assert mesh.metric("router", "seekmesh_router_registry_errors_total") >= 2

    # back to the original file through the API: the reload's model and key go
    mesh.config_path.write_text(json.dumps(original, indent=1))
    status, reply = mesh.admin_call("POST", "/admin/reload")
    assert status == 200 and reply["version"], reply
    assert reply["version"] == mesh.admin_call("GET", "/admin/models")[1]["version"]
    assert ask(mesh, "reg-hup")[0] == 404
    assert ask(mesh, "deepseek-chat", key="sk-reg-hup-secret")[0] == 401
    assert_echo(mesh, "deepseek-chat")


# --- 8. seekmeshctl -----------------------------------------------------------------------------

def test_seekmeshctl_end_to_end(mesh):
    redis_up(mesh)
    result = ctl(mesh, "models", "list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[:2] == ["NAME", "SOURCE"], header
    table = {row.split()[0]: row.split() for row in rows}
    for name in CONFIG_MODELS:
        assert table[name][1] == "config", table

    name = "reg-ctl"
    url = mesh.shift_url(MOCK_CHAT)
    result = ctl(mesh, "models", "add", name, "--endpoint", url, "--no-auth", "--max-concurrency", "8")
    assert result.returncode == 0, result.stderr
    assert "model %s saved" % name in result.stdout
    headers, _ = assert_echo(mesh, name, "from ctl")
    assert headers["x-seekmesh-model"] == name
    entry = mesh.admin_call("GET", "/admin/models/" + name)[1]
    assert entry["endpoint"] == url and entry["auth"] == {"type": "none"} and entry["max_concurrency"] == 8
    result = ctl(mesh, "models", "get", name)
    assert result.returncode == 0 and json.loads(result.stdout)["endpoint"] == url, result
    result = ctl(mesh, "models", "set", name, "--upstream-model", "deepseek-reasoner")
    assert result.returncode == 0 and "updated" in result.stdout, result.stderr
    _, body = assert_echo(mesh, name, "set by ctl")
    assert body["choices"][0]["message"]["reasoning_content"] == "Thinking about: set by ctl"
    result = ctl(mesh, "models", "list")
    row = [r.split() for r in result.stdout.splitlines() if r.split()[0] == name]
    assert row and row[0][1] == "admin" and url in row[0], result.stdout
    result = ctl(mesh, "models", "remove", name)
    assert result.returncode == 0 and "model %s removed" % name in result.stdout, result.stderr
    assert ask(mesh, name)[0] == 404
    result = ctl(mesh, "models", "remove", name)
    assert result.returncode == 1 and "404" in result.stderr and name in result.stderr, result

    result = ctl(mesh, "keys", "add", "--tenant", "t", "--rpm", "60")
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    key_id = lines["id"]
    secret = lines["key"].split()[0]
    assert secret.startswith("sk-") and "shown once" in lines["key"]
    assert result.stdout.count(secret) == 1
    assert_echo(mesh, "deepseek-chat", "ctl key", key=secret)
    result = ctl(mesh, "keys", "list")
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout and KEY not in result.stdout
    row = [r.split() for r in result.stdout.splitlines() if r.split()[0] == key_id]
    assert row and row[0][1:4] == ["t", "admin", "60"], result.stdout
    result = ctl(mesh, "keys", "remove", key_id)
    assert result.returncode == 0 and "key %s removed" % key_id in result.stdout, result.stderr
    assert ask(mesh, "deepseek-chat", key=secret)[0] == 401

    result = ctl(mesh, "reload")
    assert result.returncode == 0 and result.stdout.startswith("reloaded (version "), result
    assert_echo(mesh, "deepseek-chat")

    result = ctl(mesh, "models", "list", token="not-the-token")
    assert result.returncode == 1, result
    assert result.stdout == ""
    assert "401" in result.stderr and "Missing or wrong admin token" in result.stderr, result.stderr


def test_seekmeshctl_models_list_shows_aliases(mesh):
    """`models list` promises "the models ... with their aliases".  The
    config gives deepseek-chat the alias deepseek-v4-flash in the entry's
    own "aliases" field (GET /admin/models returns it there), yet the
    ALIASES column only looks at the top-level aliases{} map."""
    result = ctl(mesh, "models", "list")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split()[-1] == "ALIASES"
    row = [r for r in rows if r.split()[0] == "deepseek-chat"][0]
    assert row.split()[-1] == "deepseek-v4-flash", "ALIASES column of deepseek-chat: %r" % row
