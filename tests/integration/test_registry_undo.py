"""Every run-time change of the registry can be undone: the README's own
admin example is run as written, then undone with the commands the README
shows next to it, against a real mesh (router, Redis, connector, ingress).

- each optional setting has a --no- form (the way back from `--fallback`)
- `models reset NAME` / `keys reset ID` drop the run-time change of one
  entry: the config file's entry is back, through reload and restarts
- `registry reset` drops them all: the registry is the file's again
- a reset is validated against the whole registry like any other change"""
import json
import os
import re
import shlex
import subprocess
import time

from meshlib import ADMIN_TOKEN, BIN, KEY, REPO, echo

CTL = BIN / "seekmeshctl"


def readme_block(after):
    """The commands of the first ```sh block after the line holding `after`
    in README.md, as argument lists (comments dropped)."""
    text = (REPO / "README.md").read_text()
    start = text.index(after)
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S).group(1)
    commands = []
    for line in block.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            commands.append(shlex.split(line))
    return commands


def ctl(mesh, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
    env["SEEKMESH_ADMIN_TOKEN"] = ADMIN_TOKEN
    host, port = mesh.admin_address("router")
    return subprocess.run([str(CTL), "--admin", "%s:%d" % (host, port), *args], env=env,
                          capture_output=True, text=True, timeout=10)


def run_readme_command(mesh, argv, substitutions=None):
    assert argv[0] == "build/bin/seekmeshctl", argv
    args = [(substitutions or {}).get(a, a) for a in argv[1:]]
    result = ctl(mesh, *args)
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return result


def registry(mesh, what):
    status, body = mesh.admin_call("GET", "/admin/" + what)
    assert status == 200, body
    return body


def entries(mesh, what):
    return {e["name" if what == "models" else "id"]: e for e in registry(mesh, what)["data"]}


def chat(mesh, model, key=KEY):
    return mesh.chat({"model": model, "messages": [{"role": "user", "content": "hi"}]}, key=key)


def overlay(mesh):
    return (mesh.redis_cli("HGETALL", "seekmesh:registry:models"),
            mesh.redis_cli("HGETALL", "seekmesh:registry:keys"))


def test_the_readme_admin_example_is_undone_by_the_readme(make_mesh):
    mesh = make_mesh()
    models_before, keys_before = entries(mesh, "models"), entries(mesh, "keys")
    assert all(e["source"] == "config" for e in models_before.values())
    assert chat(mesh, "deepseek-chat")[0] == 200

    # the example, as the README writes it
    added_key = None
    for argv in readme_block("From the repository's directory:"):
        result = run_readme_command(mesh, argv)
        if argv[1:3] == ["keys", "add"]:
            added_key = re.search(r"^key: (\S+)", result.stdout, re.M).group(1)
            added_id = re.search(r"^id: (\S+)", result.stdout, re.M).group(1)
    models = entries(mesh, "models")
    assert models["qwen-7b"]["source"] == "admin"
    assert models["deepseek-chat"]["fallback"] == "qwen-7b"
    assert entries(mesh, "keys")[added_id]["tenant"] == "acme"
    assert chat(mesh, "deepseek-chat", key=added_key)[0] == 200

    # the way back, as the README writes it, checked step by step
    undo = readme_block("Every change can be undone.")
    steps = [" ".join(argv[1:3]) for argv in undo]
    assert steps == ["models set", "models remove", "keys remove", "models reset", "registry reset"]
    run_readme_command(mesh, undo[0])                       # --no-fallback
    assert "fallback" not in entries(mesh, "models")["deepseek-chat"]
    run_readme_command(mesh, undo[1])                       # remove qwen-7b: no longer a fallback
    assert "qwen-7b" not in entries(mesh, "models")
    run_readme_command(mesh, undo[2], {"ID": added_id})     # the key keys add made
    assert added_id not in entries(mesh, "keys")
    assert chat(mesh, "deepseek-chat", key=added_key)[0] == 401
    run_readme_command(mesh, undo[3])                       # deepseek-chat: the file's entry
    reset = entries(mesh, "models")["deepseek-chat"]
    assert reset == models_before["deepseek-chat"], (reset, models_before["deepseek-chat"])
    run_readme_command(mesh, undo[4])                       # registry reset
    assert entries(mesh, "models") == models_before
    assert entries(mesh, "keys") == keys_before
    assert overlay(mesh) == ("", "")
    status, _, body = chat(mesh, "deepseek-chat")
    assert status == 200 and body["choices"][0]["message"]["content"] == echo("hi")


def test_a_removed_config_model_comes_back_by_reset_and_stays_back(make_mesh):
    """The trap of the first hour: `models remove deepseek-chat` outlives
    reload and restarts (it is kept in Redis); `models reset` undoes it, and
    that outlives them too."""
    mesh = make_mesh()
    result = ctl(mesh, "models", "remove", "deepseek-chat")
    assert result.returncode == 0, result.stderr
    assert chat(mesh, "deepseek-chat")[0] == 404
    listing = ctl(mesh, "models", "list")
    assert "removed at run time" in listing.stdout and "deepseek-chat" in listing.stdout.splitlines()[-1]
    assert registry(mesh, "models")["removed"] == ["deepseek-chat"]
    assert ctl(mesh, "reload").returncode == 0
    assert chat(mesh, "deepseek-chat")[0] == 404
    mesh.mesh("restart", "router")
    mesh.wait_ready("router")
    mesh.wait_metric("router", "seekmesh_redis_up", lambda v: v == 1)
    assert chat(mesh, "deepseek-chat")[0] == 404

    result = ctl(mesh, "models", "reset", "deepseek-chat")
    assert result.returncode == 0, result.stderr
    assert "the config file's entry is back" in result.stdout
    assert chat(mesh, "deepseek-chat")[0] == 200
    assert registry(mesh, "models")["removed"] == []
    assert overlay(mesh)[0] == ""
    mesh.mesh("restart", "router")
    mesh.wait_ready("router")
    mesh.wait_metric("router", "seekmesh_redis_up", lambda v: v == 1)
    assert chat(mesh, "deepseek-chat")[0] == 200


def test_resets_are_validated_and_name_what_they_did(make_mesh):
    mesh = make_mesh()
    mock = mesh.shift_url("http://127.0.0.1:9100/v1/chat/completions")
    assert ctl(mesh, "models", "add", "extra", "--endpoint", mock, "--no-auth").returncode == 0
    assert ctl(mesh, "models", "set", "deepseek-chat", "--fallback", "extra").returncode == 0
    # extra exists only at run time: its reset removes it, which would leave
    # deepseek-chat's fallback dangling: refused, nothing written
    before = overlay(mesh)
    result = ctl(mesh, "models", "reset", "extra")
    assert result.returncode == 1 and "fallback" in result.stderr, result.stderr
    assert overlay(mesh) == before
    assert ctl(mesh, "models", "reset", "deepseek-chat").returncode == 0
    result = ctl(mesh, "models", "reset", "extra")
    assert result.returncode == 0 and "removed (it was made at run time)" in result.stdout
    assert "extra" not in entries(mesh, "models")
    result = ctl(mesh, "models", "reset", "no-such-model")
    assert result.returncode == 1 and "404" in result.stderr

    # a key of the file, changed then reset; the budget's period is shown
    result = ctl(mesh, "keys", "set", "dev", "--budget", "5")
    assert result.returncode == 0, result.stderr
    assert entries(mesh, "keys")["dev"]["budget_period"] == "day"
    row = [line for line in ctl(mesh, "keys", "list").stdout.splitlines() if line.startswith("dev ")]
    assert row and "5/day" in row[0], row
    for _ in range(10):         # admitted until the usage (settled after each) reaches 5
        status, _, body = chat(mesh, "deepseek-chat")
        if status != 200:
            break
        time.sleep(0.05)
    assert status == 402 and "5 tokens per day" in body["error"]["message"], body
    result = ctl(mesh, "keys", "set", "dev", "--no-budget")
    assert result.returncode == 0 and chat(mesh, "deepseek-chat")[0] == 200
    result = ctl(mesh, "keys", "reset", "dev")
    assert result.returncode == 0 and "the config file's entry is back" in result.stdout
    assert json.loads(mesh.redis_cli("HGET", "seekmesh:registry:keys", "dev") or "null") is None
    assert chat(mesh, "deepseek-chat")[0] == 200
