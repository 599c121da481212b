"""Session memory on a real mesh (two routers, Redis), through the official
openai SDK: the client sends one message a turn and the upstream sees the
whole history; the history is bounded in tokens (the system prompt kept);
a client that sends the history anyway is not doubled; a session belongs
to its key (another gets 404); GET and DELETE; two requests of one session
at once are served one after the other, and a wait is bounded; nothing of
a conversation is in Redis in clear."""
import json
import time
import uuid

import pytest

from custsvc import mock_forget, mock_requests, module_mesh, sdk, sdk_start, wait_for
from meshlib import CHAT, KEY, parallel

OTHER_KEY = "sk-other-sessions-test"
SAME_TENANT_KEY = "sk-dev-second-sessions-test"
CONFIG = {
    "mesh": {"instances": {"router": 2}},
    "sessions": {"max_history_tokens": 400, "wait_ms": 1500, "ttl_s": 3600},
    "keys": [{"id": "dev", "key": KEY, "tenant": "dev"},
             {"id": "dev2", "key": SAME_TENANT_KEY, "tenant": "dev"},
             {"id": "other", "key": OTHER_KEY, "tenant": "other"}],
}


@pytest.fixture(scope="module")
def smesh(tmp_path_factory):
    yield from module_mesh(tmp_path_factory, CONFIG)


def new_id():
    return "test-" + uuid.uuid4().hex


def user(text):
    return {"role": "user", "content": text}


def chat(messages, stream=False, **extra):
    return dict({"model": "deepseek-chat", "stream": stream, "messages": messages}, **extra)


def seen_with(mesh, marker):
    """The message lists the mock received whose last user message has marker"""
    found = []
    for body in mock_requests(mesh):
        messages = body.get("messages", []) if isinstance(body, dict) else []
        users = [m for m in messages if m.get("role") == "user"]
        if users and marker in json.dumps(users[-1]):
            found.append(messages)
    return found


def test_five_turns_one_message_each_and_the_upstream_sees_the_whole_history(smesh):
    session = new_id()
    header = {"x-seekmesh-session": session}
    system = {"role": "system", "content": "You are a helpful shop assistant."}
    expected = [system]
    for turn in range(5):
        text = "turn %d of %s" % (turn, session)
        messages = [system, user(text)] if turn == 0 else [user(text)]
        result = sdk(smesh, chat(messages, stream=turn % 2 == 1), headers=header)
        assert result["ok"], result
        answer = result["content"] if turn % 2 else result["completion"]["choices"][0]["message"]["content"]
        assert answer == "Echo: " + text
        seen = seen_with(smesh, text)
        assert len(seen) == 1
        expected.append(user(text))
        assert [{"role": m["role"], "content": m["content"]} for m in seen[0]] == expected
        expected.append({"role": "assistant", "content": answer})
    # what the session holds
    status, _, body = smesh.request("GET", "/v1/sessions/" + session)
    assert status == 200
    stored = json.loads(body)
    assert stored["object"] == "session" and stored["id"] == session and stored["turns"] == 5
    assert [{"role": m["role"], "content": m["content"]} for m in stored["messages"]] == expected
    assert stored["taken_over_by"] is None


def test_metadata_session_id_and_a_history_sent_again_is_not_doubled(smesh):
    session = new_id()
    meta = {"metadata": {"session_id": session}}
    first = sdk(smesh, chat([user("hello " + session)], **meta))
    answer = first["completion"]["choices"][0]["message"]
    # the client sends everything again, as it would without sessions
    again = [user("hello " + session), {"role": "assistant", "content": answer["content"]},
             user("and again " + session)]
    second = sdk(smesh, chat(again, **meta))
    assert second["ok"]
    seen = seen_with(smesh, "and again " + session)[-1]
    assert [m["content"] for m in seen] == [m["content"] for m in again]
    # header and metadata must agree
    status, _, body = smesh.chat(chat([user("x")], metadata={"session_id": "other-" + session}),
                                 headers={"x-seekmesh-session": session})
    assert status == 400 and body["error"]["code"] == "invalid_session_id"
    status, _, body = smesh.chat(chat([user("x")]), headers={"x-seekmesh-session": "bad id!"})
    assert status == 400 and body["error"]["param"] == "x-seekmesh-session"


def test_history_is_trimmed_to_the_bound_keeping_the_system_prompt(smesh):
    session = new_id()
    header = {"x-seekmesh-session": session}
    system = {"role": "system", "content": "Keep me."}
    filler = "x" * 400         # 4 + 100 tokens a message: about two turns fit in 400
    for turn in range(6):
        text = "long turn %d %s %s" % (turn, session, filler)
        messages = [system, user(text)] if turn == 0 else [user(text)]
        assert sdk(smesh, chat(messages), headers=header)["ok"]
    seen = seen_with(smesh, "long turn 5 %s" % session)[-1]
    tokens = sum(4 + len(m["content"]) // 4 for m in seen)
    assert tokens <= 400
    assert seen[0] == system
    assert seen[-1]["content"].startswith("long turn 5 ")
    # the oldest turns went first, whole (a user message and its answer)
    kept = [m["content"].split(" ")[2] for m in seen[1:] if m["role"] == "user"]
    assert kept == [str(t) for t in range(6 - len(kept), 6)] and len(kept) < 6
    roles = [m["role"] for m in seen[1:]]
    assert roles == ["user", "assistant"] * (len(kept) - 1) + ["user"]


def test_a_session_belongs_to_its_key(smesh):
    session = new_id()
    assert sdk(smesh, chat([user("mine " + session)]), headers={"x-seekmesh-session": session})["ok"]
    for key in (OTHER_KEY, SAME_TENANT_KEY):
        result = sdk(smesh, chat([user("theirs")]), key=key, headers={"x-seekmesh-session": session})
        assert not result["ok"] and result["status"] == 404 and result["code"] == "session_not_found"
        for method in ("GET", "DELETE"):
            status, _, body = smesh.request(method, "/v1/sessions/" + session, key=key)
            assert status == 404 and json.loads(body)["error"]["code"] == "session_not_found"
    # nothing of the owner's changed
    status, _, body = smesh.request("GET", "/v1/sessions/" + session)
    assert status == 200 and json.loads(body)["turns"] == 1


def test_delete_forgets_the_session(smesh):
    session = new_id()
    header = {"x-seekmesh-session": session}
    assert sdk(smesh, chat([user("remember " + session)]), headers=header)["ok"]
    status, _, body = smesh.request("DELETE", "/v1/sessions/" + session)
    assert status == 200 and json.loads(body) == {"id": session, "object": "session", "deleted": True}
    assert smesh.request("GET", "/v1/sessions/" + session)[0] == 404
    assert smesh.request("DELETE", "/v1/sessions/" + session)[0] == 404
    assert smesh.redis_cli("EXISTS", "seekmesh:s:{%s}" % session) == "0"
    # a new conversation under the same id starts from nothing
    assert sdk(smesh, chat([user("fresh " + session)]), headers=header)["ok"]
    assert [m["content"] for m in seen_with(smesh, "fresh " + session)[-1]] == ["fresh " + session]


def test_two_requests_of_one_session_are_served_one_after_the_other(smesh):
    session = new_id()
    header = {"x-seekmesh-session": session}
    mock_forget(smesh)
    # the first answers slowly; the second, sent meanwhile, waits for it
    slow = sdk_start(smesh, chat([user("first " + session)], stream=True,
                                 mock={"tokens": 4, "delay_ms": 300}), headers=header)
    wait_for(lambda: seen_with(smesh, "first " + session), what="the first request upstream")
    fast = sdk(smesh, chat([user("second " + session)]), headers=header)
    first = slow.finish()
    assert first["ok"] and fast["ok"]
    seen = seen_with(smesh, "second " + session)[-1]
    assert [m["content"] for m in seen] == ["first " + session, first["content"], "second " + session]
    assert first["content"] == "Echo: first %s t1 t2 t3" % session
    # many at once: each sees every earlier turn, none is lost or doubled
    texts = ["burst %d %s" % (i, session) for i in range(4)]
    results = parallel([lambda t=t: sdk(smesh, chat([user(t)]), headers=header) for t in texts])
    assert all(r["ok"] for r in results)
    status, _, body = smesh.request("GET", "/v1/sessions/" + session)
    contents = [m["content"] for m in json.loads(body)["messages"]]
    for t in texts:
        assert contents.count(t) == 1 and contents.count("Echo: " + t) == 1
        assert contents.index("Echo: " + t) == contents.index(t) + 1


def test_a_wait_for_the_turn_before_is_bounded(smesh):
    session = new_id()
    header = {"x-seekmesh-session": session}
    # sessions.wait_ms is 1.5 s: the second gives up while the first runs 4 s
    slow = sdk_start(smesh, chat([user("long " + session)], stream=True,
                                 mock={"tokens": 9, "delay_ms": 500}), headers=header)
    wait_for(lambda: seen_with(smesh, "long " + session), what="the first request upstream")
    started = time.time()
    busy = sdk(smesh, chat([user("impatient " + session)]), headers=header)
    assert not busy["ok"] and busy["status"] == 409 and busy["code"] == "session_busy"
    assert 1.3 <= time.time() - started < 4
    assert slow.finish()["ok"]


def test_the_history_is_sealed_in_redis_with_a_ttl(smesh):
    session = new_id()
    secret = "my card ends in 4242 " + session
    assert sdk(smesh, chat([user(secret)]), headers={"x-seekmesh-session": session})["ok"]
    key = "seekmesh:s:{%s}" % session
    dump = smesh.redis_cli("--no-raw", "HGETALL", key)
    assert "4242" not in dump and "Echo" not in dump and "tenant" in dump
    ttl = int(smesh.redis_cli("TTL", key))
    assert 3500 < ttl <= 3600
    assert smesh.redis_cli("EXISTS", key + ":lock") == "0"     # the turn let it go
