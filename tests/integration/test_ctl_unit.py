"""seekmeshctl's own behaviour, against a stub of the router's admin API.

A small http.server in a thread stands in for the router's /admin/... routes:
it records each request and answers what the test queued.  These tests prove
what the command line sends (method, path, Authorization, JSON body), how it
prints replies and errors, and its exit codes.  They do not test the router;
the end-to-end test of seekmeshctl against a real router is separate."""
import json
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SEEKMESH_BIN") or REPO / "build" / "bin")
CTL = BIN / "seekmeshctl"
TOKEN = "adm-7f3a9c-test"


class StubAdmin:
    """Records requests; answers each with self.status and self.reply (a JSON
    value, or bytes as they are), framed by Content-Length, chunked coding
    or the end of the connection (self.framing)."""

    def __init__(self):
        self.requests = []
        self.status, self.reply, self.framing = 200, {}, "length"
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                stub.requests.append({"method": self.command, "path": self.path,
                                      "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": body})
                data = stub.reply if isinstance(stub.reply, bytes) else json.dumps(stub.reply).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                if stub.status == 204:
                    data = b""
                elif stub.framing == "length":
                    self.send_header("Content-Length", str(len(data)))
                elif stub.framing == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    step = max(1, len(data) // 3)
                    data = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + step]), data[i:i + step])
                                    for i in range(0, len(data), step)) + b"0\r\n\r\n"
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def answer(self, reply, status=200, framing="length"):
        self.status, self.reply, self.framing = status, reply, framing

    @property
    def last(self):
        assert len(self.requests) == 1, self.requests
        return self.requests[0]

    def body(self):
        return json.loads(self.last["body"])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def admin(tmp_path):
    if not CTL.exists():
        pytest.fail(f"{CTL} is missing: build it with `make {CTL.relative_to(REPO)}`")
    stub = StubAdmin()
    stub.empty_dir = tmp_path / "empty-run-dir"
    yield stub
    stub.close()


def ctl(admin, *args, token=TOKEN, url=None, timeout=15, run_dir=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_ADMIN")}
    env["SEEKMESH_ADMIN_URL"] = url or f"http://127.0.0.1:{admin.port}"
    if token is not None:
        env["SEEKMESH_ADMIN_TOKEN"] = token
    #  Not the token a `make run` of this checkout keeps in run/admin-token
    env["SEEKMESH_RUN_DIR"] = str(run_dir or admin.empty_dir)
    return subprocess.run([str(CTL), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def table(stdout):
    """The rows of a printed table, split on runs of two or more spaces."""
    import re
    return [re.split(r"\s{2,}", line.rstrip()) for line in stdout.splitlines()]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MODELS = {
    "object": "list", "version": "9c1e",
    "data": [
        {"name": "deepseek-chat", "source": "config", "max_concurrency": 64, "fallback": "qwen-7b",
         "endpoint": "http://127.0.0.1:9100/v1/chat/completions"},
        {"name": "qwen-7b", "source": "admin", "max_concurrency": 8,
         "endpoints": [{"url": "http://10.0.0.1/v1/chat/completions"}, {"url": "http://10.0.0.2/v1/chat/completions"}]},
        {"name": "chat-ab", "source": "admin",
         "variants": [{"model": "deepseek-chat", "weight": 90}, {"model": "qwen-7b", "weight": 10}]},
    ],
    "aliases": {"deepseek-v4-flash": "deepseek-chat", "ds": "deepseek-chat"},
}


def test_models_list_gets_the_registry_and_prints_a_table(admin):
    admin.answer(MODELS)
    r = ctl(admin, "models", "list")
    assert r.returncode == 0, r.stderr
    request = admin.last
    assert (request["method"], request["path"]) == ("GET", "/admin/models")
    assert request["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert request["body"] == b""
    assert table(r.stdout) == [
        ["NAME", "SOURCE", "ENDPOINTS", "FALLBACK", "MAX_CONC", "ALIASES"],
        ["deepseek-chat", "config", "http://127.0.0.1:9100/v1/chat/completions", "qwen-7b", "64",
         "deepseek-v4-flash,ds"],
        ["qwen-7b", "admin", "http://10.0.0.1/v1/chat/completions (+1)", "-", "8", "-"],
        ["chat-ab", "admin", "deepseek-chat,qwen-7b", "-", "-", "-"],
    ]
    lines = r.stdout.splitlines()
    assert lines[0].index("SOURCE") == lines[1].index("config") == lines[2].index("admin")


def test_json_flag_prints_the_reply_as_it_came(admin):
    admin.answer(MODELS)
    r = ctl(admin, "models", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == MODELS


def test_models_get_escapes_the_name_and_pretty_prints_the_entry(admin):
    entry = {"name": "Qwen/Qwen2 7B", "source": "admin", "endpoint": "http://10.0.0.1/v1"}
    admin.answer(entry)
    r = ctl(admin, "models", "get", "Qwen/Qwen2 7B")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("GET", "/admin/models/Qwen%2FQwen2%207B")
    assert json.loads(r.stdout) == entry
    assert '\n  "source": "admin"' in r.stdout


def test_models_add_puts_the_whole_entry(admin):
    admin.answer({"name": "qwen-7b"})
    r = ctl(admin, "models", "add", "qwen-7b", "--endpoint", "http://10.0.0.1/v1/chat/completions",
            "--upstream-model", "Qwen/Qwen2-7B", "--fallback", "deepseek-chat",
            "--max-concurrency", "16", "--key-env", "QWEN_API_KEY", "--alias", "qwen", "--alias=q7")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("PUT", "/admin/models/qwen-7b")
    assert admin.last["headers"]["content-type"] == "application/json"
    assert admin.body() == {
        "name": "qwen-7b", "endpoint": "http://10.0.0.1/v1/chat/completions",
        "upstream_model": "Qwen/Qwen2-7B", "fallback": "deepseek-chat", "max_concurrency": 16,
        "auth": {"type": "api_key", "key_name": "Authorization", "key_env": "QWEN_API_KEY"},
        "aliases": ["qwen", "q7"]}
    assert r.stdout == "model qwen-7b saved\n"


def test_models_add_with_several_endpoints_and_no_auth(admin):
    r = ctl(admin, "models", "add", "m", "--endpoint", "http://a/v1", "--endpoint", "http://b/v1",
            "--no-auth")
    assert r.returncode == 0, r.stderr
    assert admin.body() == {"name": "m", "endpoints": [{"url": "http://a/v1"}, {"url": "http://b/v1"}],
                            "auth": {"type": "none"}}


def test_models_add_from_a_file_with_options_over_it(admin, tmp_path):
    entry = tmp_path / "entry.json"
    entry.write_text(json.dumps({"name": "m", "type": "llm", "endpoints": [{"url": "http://a/v1"}],
                                 "max_concurrency": 4, "stream_only": True}))
    r = ctl(admin, "models", "add", "m", "--file", str(entry), "--endpoint", "http://b/v1",
            "--max-concurrency", "8")
    assert r.returncode == 0, r.stderr
    assert admin.body() == {"name": "m", "type": "llm", "endpoint": "http://b/v1",
                            "max_concurrency": 8, "stream_only": True}


def test_models_add_refuses_a_file_naming_another_model(admin, tmp_path):
    entry = tmp_path / "entry.json"
    entry.write_text(json.dumps({"name": "other", "endpoint": "http://a/v1"}))
    r = ctl(admin, "models", "add", "m", "--file", str(entry))
    assert r.returncode == 64
    assert "not a model entry named 'm'" in r.stderr
    assert admin.requests == []


def test_models_set_patches_only_the_given_fields(admin):
    r = ctl(admin, "models", "set", "qwen-7b", "--max-concurrency", "32")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("PATCH", "/admin/models/qwen-7b")
    assert admin.body() == {"max_concurrency": 32}
    assert r.stdout == "model qwen-7b updated\n"


def test_models_set_removes_what_an_option_replaces(admin):
    r = ctl(admin, "models", "set", "m", "--endpoint", "http://a/v1", "--no-auth", "--fallback", "f")
    assert r.returncode == 0, r.stderr
    assert admin.body() == {"endpoint": "http://a/v1", "endpoints": None, "fallback": "f",
                            "auth": {"type": "none", "key_name": None, "key_env": None}}


def test_models_remove_deletes(admin):
    admin.answer(None, status=204)
    r = ctl(admin, "models", "remove", "m")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("DELETE", "/admin/models/m")
    assert r.stdout == "model m removed\n"


KEYS = {"object": "list", "data": [
    {"id": "ops", "tenant": "acme", "rpm": 600, "tpm": 90000, "budget": 5000, "budget_period": "month",
     "fingerprint": "ab12", "source": "config"},
    {"id": "k-1", "tenant": "beta", "models": ["deepseek-chat", "qwen-7b"], "fingerprint": "cd34",
     "source": "admin"},
]}


def test_keys_list_prints_a_table(admin):
    admin.answer(KEYS)
    r = ctl(admin, "keys", "list")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("GET", "/admin/keys")
    assert table(r.stdout) == [
        ["ID", "TENANT", "SOURCE", "RPM", "TPM", "BUDGET", "MODELS"],
        ["ops", "acme", "config", "600", "90000", "5000/month", "(all)"],
        ["k-1", "beta", "admin", "-", "-", "-", "deepseek-chat,qwen-7b"],
    ]


def test_keys_add_posts_the_key_and_shows_the_secret_once(admin):
    admin.answer({"id": "k-2", "key": "sk-live-5e6f", "tenant": "acme"}, status=201)
    r = ctl(admin, "keys", "add", "--tenant", "acme", "--rpm", "60", "--tpm", "10000",
            "--budget", "200000", "--budget-period", "day", "--model", "deepseek-chat",
            "--model", "qwen-7b")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("POST", "/admin/keys")
    assert admin.body() == {"tenant": "acme", "rpm": 60, "tpm": 10000, "budget": 200000,
                            "budget_period": "day", "models": ["deepseek-chat", "qwen-7b"]}
    assert r.stdout == "id: k-2\nkey: sk-live-5e6f (shown once; store it now)\n"


def test_keys_add_with_id_and_secret(admin):
    admin.answer({"id": "ci"}, status=201)
    r = ctl(admin, "keys", "add", "--id", "ci", "--tenant", "acme", "--key", "sk-given-0123456789")
    assert r.returncode == 0, r.stderr
    assert admin.body() == {"id": "ci", "tenant": "acme", "key": "sk-given-0123456789"}


def test_keys_set_and_remove(admin):
    r = ctl(admin, "keys", "set", "k 1", "--rpm", "120", "--model", "deepseek-chat")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("PATCH", "/admin/keys/k%201")
    assert admin.body() == {"rpm": 120, "models": ["deepseek-chat"]}
    admin.requests.clear()
    r = ctl(admin, "keys", "remove", "k 1")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("DELETE", "/admin/keys/k%201")
    assert r.stdout == "key k 1 removed\n"


def test_reload_posts_without_a_body(admin):
    admin.answer({"version": "9c1f"})
    r = ctl(admin, "reload")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("POST", "/admin/reload")
    assert admin.last["headers"]["content-length"] == "0"
    assert r.stdout == "reloaded (version 9c1f)\n"


def test_error_envelope_exits_1_with_its_message(admin):
    admin.answer({"error": {"message": "no model called 'nope'", "type": "invalid_request_error",
                            "code": "model_not_found"}}, status=404)
    r = ctl(admin, "models", "get", "nope")
    assert r.returncode == 1
    assert r.stderr == "seekmeshctl: 404: no model called 'nope'\n"
    assert r.stdout == ""


def test_error_without_an_envelope_shows_the_start_of_the_body(admin):
    admin.answer(b"upstream exploded\nsecond line", status=502)
    r = ctl(admin, "keys", "list")
    assert (r.returncode, r.stderr) == (1, "seekmeshctl: 502: upstream exploded\n")
    admin.answer(b"", status=401)
    r = ctl(admin, "keys", "list")
    assert (r.returncode, r.stderr) == (1, "seekmeshctl: 401: Unauthorized\n")


def test_missing_token_is_refused_before_any_request(admin):
    r = ctl(admin, "models", "list", token=None)
    assert r.returncode == 64
    assert "--token" in r.stderr and "SEEKMESH_ADMIN_TOKEN" in r.stderr
    assert admin.requests == []


def test_the_token_make_run_keeps_is_used_when_none_is_given(admin, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "admin-token").write_text("adm-kept-by-make-run\n")
    admin.answer(KEYS)
    r = ctl(admin, "keys", "list", token=None, run_dir=run_dir)
    assert r.returncode == 0, r.stderr
    assert admin.last["headers"]["authorization"] == "Bearer adm-kept-by-make-run"
    # the environment's wins over the kept one
    admin.requests.clear()
    r = ctl(admin, "keys", "list", token="adm-from-env", run_dir=run_dir)
    assert admin.last["headers"]["authorization"] == "Bearer adm-from-env"


def test_every_optional_setting_has_a_way_back(admin):
    admin.answer({"name": "m"})
    r = ctl(admin, "models", "set", "m", "--no-fallback", "--no-upstream-model",
            "--no-max-concurrency", "--no-alias")
    assert r.returncode == 0, r.stderr
    assert admin.last["method"] == "PATCH" and admin.last["path"] == "/admin/models/m"
    assert admin.body() == {"fallback": None, "upstream_model": None, "max_concurrency": None,
                            "aliases": None}
    admin.requests.clear()
    admin.answer({"id": "k"})
    r = ctl(admin, "keys", "set", "k", "--no-rpm", "--no-tpm", "--no-budget", "--no-budget-period",
            "--no-model")
    assert r.returncode == 0, r.stderr
    assert admin.body() == {"rpm": None, "tpm": None, "budget": None, "budget_period": None,
                            "models": None}
    # an empty value says where the way back is
    r = ctl(admin, "models", "set", "m", "--fallback", "")
    assert r.returncode == 64 and "--no-fallback" in r.stderr, r.stderr


def test_resets_post_to_the_entry_and_the_registry(admin):
    admin.answer({"name": "deepseek-chat", "source": "config", "reset": True})
    r = ctl(admin, "models", "reset", "deepseek-chat")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("POST", "/admin/models/deepseek-chat/reset")
    assert "the config file's entry is back" in r.stdout
    admin.requests.clear()
    admin.answer({"id": "key-1", "removed": True, "reset": True})
    r = ctl(admin, "keys", "reset", "key-1")
    assert (admin.last["method"], admin.last["path"]) == ("POST", "/admin/keys/key-1/reset")
    assert "removed" in r.stdout
    admin.requests.clear()
    admin.answer({"models_reset": 2, "keys_reset": 1, "version": "abc"})
    r = ctl(admin, "registry", "reset")
    assert r.returncode == 0, r.stderr
    assert (admin.last["method"], admin.last["path"]) == ("POST", "/admin/registry/reset")
    assert "2 model and 1 key changes dropped" in r.stdout


def test_token_flag_wins_over_the_environment(admin):
    admin.answer(KEYS)
    r = ctl(admin, "--token", "adm-from-flag", "keys", "list")
    assert r.returncode == 0, r.stderr
    assert admin.last["headers"]["authorization"] == "Bearer adm-from-flag"


@pytest.mark.parametrize("args", [
    ["models", "set", "m", "--max-concurrency", "0"],
    ["models", "set", "m", "--max-concurrency", "-3"],
    ["models", "add", "m", "--endpoint", "http://a/v1", "--max-concurrency", "lots"],
    ["keys", "add", "--tenant", "t", "--rpm", "1.5"],
    ["keys", "add", "--tenant", "t", "--tpm", "99999999999999999999"],
    ["keys", "set", "k", "--budget", ""],
    ["keys", "add", "--tenant", "t", "--budget-period", "week"],
    ["keys", "add", "--rpm", "5"],
    ["models", "set", "m"],
    ["models", "set", "m", "--fallback", "f", "--no-fallback"],
    ["models", "set", "m", "--no-fallback=x"],
    ["keys", "set", "k", "--no-rpm", "--rpm", "5"],
    ["models", "reset"],
    ["registry", "reset", "extra"],
    ["models", "add", "m"],
    ["models", "add", "m", "--endpoint", "http://a/v1", "--key-env", "K", "--no-auth"],
    ["models", "get"],
    ["models", "get", ""],
    ["models", "get", "a", "b"],
    ["models", "list", "--frobnicate"],
    ["models", "frobnicate"],
    ["audit"],
    [],
])
def test_usage_errors_exit_64_without_a_request(admin, args):
    r = ctl(admin, *args)
    assert r.returncode == 64, (args, r.stdout, r.stderr)
    assert r.stderr.startswith(("seekmeshctl: ", "usage: seekmeshctl"))
    assert admin.requests == []


def test_help_lists_every_command(admin):
    r = ctl(admin, "--help")
    assert r.returncode == 0
    for command in ("models list", "models get NAME", "models add NAME", "models set NAME",
                    "models remove NAME", "models reset NAME", "keys list", "keys add",
                    "keys set ID", "keys remove ID", "keys reset ID", "registry reset",
                    "--no-fallback", "(default: day)", "admin-token",
                    "reload", "SEEKMESH_ADMIN_TOKEN", "SEEKMESH_ADMIN_URL"):
        assert command in r.stdout


def test_admin_flag_takes_host_and_port(admin):
    admin.answer(KEYS)
    r = ctl(admin, "keys", "list", "--admin", f"localhost:{admin.port}", url="http://127.0.0.1:1")
    assert r.returncode == 0, r.stderr
    assert len(admin.requests) == 1


def test_connection_refused_exits_2(admin):
    port = free_port()
    r = ctl(admin, "models", "list", url=f"http://127.0.0.1:{port}")
    assert r.returncode == 2
    assert f"cannot reach the admin API at 127.0.0.1:{port}" in r.stderr
    assert "refused" in r.stderr


def test_a_silent_admin_times_out_after_5_s(admin):
    with socket.socket() as listener:       # accepts (in the backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        started = time.monotonic()
        r = ctl(admin, "models", "list", url=f"127.0.0.1:{listener.getsockname()[1]}")
        elapsed = time.monotonic() - started
    assert r.returncode == 2
    assert "no response within 5000 ms" in r.stderr
    assert 4.5 < elapsed < 10


@pytest.mark.parametrize("framing", ["chunked", "eof"])
def test_replies_are_read_whole_whatever_their_framing(admin, framing):
    admin.answer(MODELS, framing=framing)
    r = ctl(admin, "models", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == MODELS


def test_control_characters_from_the_api_are_not_printed(admin):
    admin.answer({"object": "list", "data": [{"id": "k\x1b[2J", "tenant": "t", "source": "admin"}]})
    r = ctl(admin, "keys", "list")
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "k?[2J" in r.stdout
