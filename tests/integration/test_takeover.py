"""Human takeover on a real mesh (two routers: the operator's commands go
to one, the requests to either), through the official openai SDK and
seekmeshctl: an operator's answer in stream and non-stream form (model
"human"), keep-alive comments while the client waits, the holding message
when the operator is silent, a takeover that ends a live stream cleanly,
release and the model's next turn seeing the human turns, the live
transcript, and an audit record of every takeover, message and release."""
import json
import subprocess
import time
import uuid

import pytest

from custsvc import (audit_records, ctl, mock_requests, module_mesh, sdk, sdk_start, wait_for)
from meshlib import ADMIN_TOKEN, BIN

CONFIG = {
    "mesh": {"instances": {"router": 2}},
    "ingress": {"keepalive_interval_ms": 300},
    "sessions": {"human_timeout_s": 4, "holding_message": "Please hold, a person will answer."},
}


@pytest.fixture(scope="module")
def tmesh(tmp_path_factory):
    yield from module_mesh(tmp_path_factory, CONFIG)


def new_session(mesh):
    """A session with one turn of the model's"""
    session = "takeover-" + uuid.uuid4().hex[:12]
    result = sdk(mesh, chat("hello from " + session), headers={"x-seekmesh-session": session})
    assert result["ok"]
    return session


def chat(text, stream=False, **extra):
    return dict({"model": "deepseek-chat", "stream": stream,
                 "messages": [{"role": "user", "content": text}]}, **extra)


def parked(mesh):
    return sum(mesh.metric("router", "seekmesh_router_session_parked_total", i) for i in (0, 1))


def ask(mesh, session, text, stream=False):
    """A request of the session in the background, and once it waits for the operator"""
    before = parked(mesh)
    call = sdk_start(mesh, chat(text, stream), headers={"x-seekmesh-session": session})
    wait_for(lambda: parked(mesh) > before, what="the request waiting for the operator")
    return call


def test_an_operator_answers_in_the_openai_shape(tmesh):
    session = new_session(tmesh)
    _, out, _ = ctl(tmesh, "sessions", "takeover", session, "--operator", "ann", instance=1)
    assert out.strip() == "taken over: %s by ann" % session
    # non-stream
    call = ask(tmesh, session, "where is my order?")
    ctl(tmesh, "sessions", "say", session, "Hi, I'm Ann. Let me look.", "--operator", "ann", instance=1)
    result = call.finish()
    assert result["ok"], result
    assert result["headers"]["x-seekmesh-model"] == "human"
    completion = result["completion"]
    assert completion["object"] == "chat.completion" and completion["model"] == "human"
    assert completion["choices"][0]["message"] == {"role": "assistant", "content": "Hi, I'm Ann. Let me look."}
    assert completion["choices"][0]["finish_reason"] == "stop"
    # stream
    call = ask(tmesh, session, "thanks, any news?", stream=True)
    ctl(tmesh, "sessions", "say", session, "It ships tomorrow.", "--operator", "ann", instance=0)
    result = call.finish()
    assert result["ok"] and result["content"] == "It ships tomorrow." and result["finish"] == "stop"
    assert result["model"] == "human" and result["headers"]["x-seekmesh-model"] == "human"
    # none of this reached the model
    assert not any("where is my order" in json.dumps(r) for r in mock_requests(tmesh))


def test_a_waiting_stream_gets_keep_alive_comments(tmesh):
    session = new_session(tmesh)
    ctl(tmesh, "sessions", "takeover", session, "--operator", "bo")
    body = chat("anyone there?", stream=True)
    stream = tmesh.stream(body)                   # raw, to see the comments
    # the raw helper has no session header: send one by metadata instead
    stream.close()
    body["metadata"] = {"session_id": session}
    stream = tmesh.stream(body)
    assert stream.read_head() == 200 and stream.headers["x-seekmesh-model"] == "human"
    deadline = time.time() + 5
    while sum(1 for _, e in stream.events if e == ": keep-alive") < 2 and time.time() < deadline:
        stream.next_event(timeout=2)
    assert sum(1 for _, e in stream.events if e == ": keep-alive") >= 2
    ctl(tmesh, "sessions", "say", session, "Yes, Bo here.", "--operator", "bo")
    stream.read_all()
    assert stream.content() == "Yes, Bo here." and stream.data_events()[-1] == "data: [DONE]"
    stream.close()


def test_a_silent_operator_gives_the_holding_message(tmesh):
    session = new_session(tmesh)
    ctl(tmesh, "sessions", "takeover", session)
    started = time.time()
    result = sdk(tmesh, chat("hello?"), headers={"x-seekmesh-session": session})
    assert 3.5 < time.time() - started < 8
    assert result["completion"]["choices"][0]["message"]["content"] == "Please hold, a person will answer."
    assert result["completion"]["model"] == "human"


def test_a_message_said_before_the_request_answers_it_at_once(tmesh):
    session = new_session(tmesh)
    ctl(tmesh, "sessions", "takeover", session, "--operator", "cy")
    ctl(tmesh, "sessions", "say", session, "I have your refund ready.", "--operator", "cy")
    started = time.time()
    result = sdk(tmesh, chat("any update?"), headers={"x-seekmesh-session": session})
    assert time.time() - started < 3
    assert result["completion"]["choices"][0]["message"]["content"] == "I have your refund ready."


def test_a_takeover_ends_a_live_stream_cleanly_and_the_operator_follows(tmesh):
    session = new_session(tmesh)
    aborted = tmesh.metric("mock", "seekmesh_mock_streams_aborted_total")
    stream = sdk_start(tmesh, chat("tell me a long story", True, mock={"tokens": 40, "delay_ms": 100}),
                       headers={"x-seekmesh-session": session})
    wait_for(lambda: any("tell me a long story" in json.dumps(r) for r in mock_requests(tmesh)),
             what="the stream upstream")
    time.sleep(0.5)
    ctl(tmesh, "sessions", "takeover", session, "--operator", "di", instance=1)
    result = stream.finish()
    assert result["ok"] and result["finish"] == "stop"
    full = "Echo: tell me a long story" + "".join(" t%d" % i for i in range(1, 40))
    assert full.startswith(result["content"]) and len(result["content"]) < len(full)
    tmesh.wait_metric("mock", "seekmesh_mock_streams_aborted_total", lambda v: v > aborted)
    # the operator's turn follows
    call = ask(tmesh, session, "hello? it stopped")
    ctl(tmesh, "sessions", "say", session, "Di here, I took over.", "--operator", "di")
    assert call.finish()["completion"]["choices"][0]["message"]["content"] == "Di here, I took over."
    # the cut answer is in the history, as the client got it
    status, _, body = tmesh.request("GET", "/v1/sessions/" + session)
    contents = [m["content"] for m in json.loads(body)["messages"]]
    assert result["content"] in contents and "Di here, I took over." in contents


def test_release_hands_back_with_the_human_turns_in_the_history(tmesh):
    session = new_session(tmesh)
    ctl(tmesh, "sessions", "takeover", session, "--operator", "ed")
    call = ask(tmesh, session, "I need a person")
    ctl(tmesh, "sessions", "say", session, "Ed here: your case 77 is solved.", "--operator", "ed")
    call.finish()
    _, out, _ = ctl(tmesh, "sessions", "release", session, "--operator", "ed", instance=1)
    assert out.strip() == "released: %s by ed" % session
    result = sdk(tmesh, chat("thanks, bot again?"), headers={"x-seekmesh-session": session})
    assert result["completion"]["model"] == "deepseek-chat"
    assert result["completion"]["choices"][0]["message"]["content"] == "Echo: thanks, bot again?"
    seen = [r for r in mock_requests(tmesh) if "thanks, bot again?" in json.dumps(r)][-1]["messages"]
    assert {"role": "assistant", "content": "Ed here: your case 77 is solved."} in seen
    assert {"role": "user", "content": "I need a person"} in seen


def test_list_watch_and_the_audit_trail(tmesh):
    session = new_session(tmesh)
    env = {"SEEKMESH_ADMIN_TOKEN": ADMIN_TOKEN, "PATH": "/usr/bin:/bin"}
    host, port = tmesh.admin_address("router", 1)
    watcher = subprocess.Popen([str(BIN / "seekmeshctl"), "--json", "--admin", "%s:%d" % (host, port),
                                "sessions", "watch", session], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(watcher.stdout.readline())
        assert first["type"] == "history" and first["turns"] == 1
        ctl(tmesh, "sessions", "takeover", session, "--operator", "fay")
        call = ask(tmesh, session, "can I talk to someone")
        ctl(tmesh, "sessions", "say", session, "Fay speaking.", "--operator", "fay")
        call.finish()
        ctl(tmesh, "sessions", "release", session, "--operator", "fay")
        sdk(tmesh, chat("and the bot?"), headers={"x-seekmesh-session": session})
        events = []
        deadline = time.time() + 10
        while time.time() < deadline and not any(e.get("type") == "assistant" for e in events):
            events.append(json.loads(watcher.stdout.readline()))
        kinds = [(e["type"], e["content"] if e["type"] in ("user", "assistant", "operator") else e["operator"])
                 for e in events]
        assert kinds == [("takeover", "fay"), ("user", "can I talk to someone"), ("operator", "Fay speaking."),
                         ("release", "fay"), ("user", "and the bot?"), ("assistant", "Echo: and the bot?")]
    finally:
        watcher.kill()
        watcher.wait()
    _, out, _ = ctl(tmesh, "sessions", "list")
    line = next(l for l in out.splitlines() if l.startswith(session))
    assert " dev " in line and line.split()[3] == "3"          # three turns stored
    records = {r["outcome"]: r for r in audit_records(tmesh) if r["params"].get("session") == session}
    for outcome in ("takeover", "operator_message", "release"):
        assert records[outcome]["params"] == {"session": session, "operator": "fay"}, records
        assert records[outcome]["tenant"] == "dev" and records[outcome]["model"] == "human"
        assert records[outcome]["start"]
    assert records["operator_message"]["prompt"] == "Fay speaking."
    said = [e for e in events if e["type"] == "operator"][0]
    assert said["operator"] == "fay" and said["time_ms"] > 0


def test_an_operator_speaks_only_in_a_session_taken_over(tmesh):
    session = new_session(tmesh)
    status, _, err = ctl(tmesh, "sessions", "say", session, "hello", check=False)
    assert status == 1 and "409" in err
    status, _, err = ctl(tmesh, "sessions", "takeover", "no-such-session", check=False)
    assert status == 1 and "404" in err
