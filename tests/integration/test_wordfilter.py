"""The sensitive-word filter on a real mesh (two routers, Redis, the
audit service), through the official openai SDK and seekmeshctl: words
added at run time are in force on every router and the ingress within a
second; a banned word spelled one character per chunk (with spaces,
full-width letters, zero-width characters, across reasoning and content)
never reaches the client; masks; the input check; audit records, metrics
and log lines name the list and entry, never the word."""
import json
import re
import time

import pytest

from custsvc import audit_records, ctl, mock_forget, mock_requests, module_mesh, sdk, wait_for, wait_record
from meshlib import KEY

ACME_KEY = "sk-acme-wordfilter-test"
CONFIG = {
    "mesh": {"instances": {"router": 2}},
    "keys": [{"id": "dev", "key": KEY, "tenant": "dev"},
             {"id": "acme", "key": ACME_KEY, "tenant": "acme"}],
}
BLOCK = "blorp"                 # the global list, block
MASK = "zonk"                   # the global list, mask
PHRASE = "bad egg"              # the global list, mask: a phrase
CJK = "\u574f\u86cb"            # 坏蛋, the global list, mask
ACME = "widgetry"               # acme's list, block


def version(mesh, service, instance=0):
    return mesh.metric(service, "seekmesh_%s_filter_version" % service, instance)


def wait_everywhere(mesh, timeout=5):
    """Until both routers and the ingress have the same, newest version:
    the seconds it took"""
    start = time.time()

    def same():
        versions = {version(mesh, "router", 0), version(mesh, "router", 1), version(mesh, "ingress")}
        return len(versions) == 1 and versions.pop() > 0
    wait_for(same, timeout, 0.01, "the same word lists everywhere")
    return time.time() - start


@pytest.fixture(scope="module")
def fmesh(tmp_path_factory):
    for mesh in module_mesh(tmp_path_factory, CONFIG):
        yield _with_words(mesh)


def _with_words(mesh):
    ids = {}
    for word, extra in ((BLOCK, []), (MASK, ["--action", "mask"]), (PHRASE, ["--action", "mask"]),
                        (CJK, ["--action", "mask"]), (ACME, ["--tenant", "acme"])):
        _, out, _ = ctl(mesh, "filters", "add", word, *extra)
        ids[word] = re.match(r"added (f\d+) ", out).group(1)
    wait_everywhere(mesh)
    mesh.ids = ids
    return mesh


def chat(content=None, deltas=None, stream=True, model="deepseek-chat"):
    body = {"model": model, "stream": stream,
            "messages": [{"role": "user", "content": content or "say it"}]}
    if deltas is not None:
        body["mock"] = {"deltas": deltas}
    return body


def test_a_change_is_in_force_on_every_router_and_ingress_within_a_second(fmesh):
    before = version(fmesh, "ingress")
    _, out, _ = ctl(fmesh, "filters", "add", "quux", "--action", "mask", instance=1)
    took = wait_everywhere(fmesh)
    assert version(fmesh, "ingress") > before
    assert took < 1.5, "%.2fs" % took
    # ... and the other router filters with it already
    _, out, _ = ctl(fmesh, "filters", "test", "a quux here", instance=0)
    assert "passes as: a **** here" in out
    entry = re.search(r"mask (f\d+) \(global list\)", out).group(1)
    ctl(fmesh, "filters", "remove", entry, instance=0)
    wait_everywhere(fmesh)
    _, out, _ = ctl(fmesh, "filters", "test", "a quux here", instance=1)
    assert "passes as: a quux here" in out


@pytest.mark.parametrize("spelling", [
    ["b", "l", "o", "r", "p"],                                   # one character a chunk
    ["b ", "l ", "o ", "r ", "p"],                               # spaces inside
    ["\uff42", "\uff4c", "\uff4f", "\uff52", "\uff50"],          # full width
    ["b\u200b", "l\u200c", "o\u200d", "r\ufeff", "p"],           # zero-width characters
    ["B", "-", "L", ".", "O", "R", "P"],                         # case and punctuation
])
def test_a_blocked_word_spelled_over_chunks_never_reaches_the_client(fmesh, spelling):
    result = sdk(fmesh, chat(deltas=["Hello ", *spelling, " after"]))
    assert result["ok"], result
    assert result["content"] == "Hello "
    assert result["finish"] == "content_filter"
    # no chunk carried a byte of the word: only "Hello " was ever content
    pieces = [c["choices"][0]["delta"].get("content") for c in result["chunks"] if c["choices"]]
    assert [p for p in pieces if p] == ["Hello "]


def test_a_word_across_reasoning_and_content_is_blocked(fmesh):
    result = sdk(fmesh, chat(deltas=[{"reasoning": "I think: bl"}, "or", "p it"]))
    assert result["ok"] and result["finish"] == "content_filter", result
    assert result["reasoning"] == "I think: "
    assert result["content"] == ""


def test_the_raw_stream_is_well_formed_after_a_block(fmesh):
    stream = fmesh.stream(chat(deltas=["Oh ", "b", "l", "o", "r", "p", "!"]))
    stream.read_all()
    assert stream.status == 200 and stream.ended
    assert stream.data_events()[-1] == "data: [DONE]"
    assert BLOCK not in stream.body.decode() and "lorp" not in stream.body.decode()
    finishes = [c["choices"][0].get("finish_reason") for c in stream.chunks() if c["choices"]]
    assert finishes[-1] == "content_filter" and finishes.count("content_filter") == 1
    assert stream.content() == "Oh "


def test_held_back_text_is_flushed_at_the_end(fmesh):
    # "zon" might become "zonk": held until the stream ends, then sent
    result = sdk(fmesh, chat(deltas=["a ", "z", "o", "n"]))
    assert result["content"] == "a zon" and result["finish"] == "stop"


def test_masks_in_streams_and_bodies(fmesh):
    deltas = ["You ", "z", "o", "N", "k", "! A b", "ad e", "gg, ", CJK[0], " ", CJK[1], "."]
    expect = "You ****! A *** ***, * *."
    result = sdk(fmesh, chat(deltas=deltas))
    assert result["content"] == expect and result["finish"] == "stop"
    result = sdk(fmesh, chat(deltas=deltas, stream=False))
    assert result["completion"]["choices"][0]["message"]["content"] == expect
    assert result["completion"]["choices"][0]["finish_reason"] == "stop"
    # a word inside another word of the text is not that word
    result = sdk(fmesh, chat(deltas=["zonked, bloRPs"]))
    assert result["content"] == "zonked, bloRPs"


def test_a_blocked_body_is_a_refusal(fmesh):
    result = sdk(fmesh, chat(deltas=["fine, then ", "blorp"], stream=False))
    choice = result["completion"]["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"] == "I'm sorry, I can't help with that."
    assert BLOCK not in json.dumps(result)


def test_a_blocked_word_in_the_input_is_refused_before_any_upstream_call(fmesh):
    mock_forget(fmesh)
    marker = "marker-%d" % time.time_ns()
    result = sdk(fmesh, chat(content="%s: please B L O R P now" % marker))
    assert not result["ok"] and result["status"] == 400 and result["code"] == "content_filter"
    assert not any(marker in json.dumps(r) for r in mock_requests(fmesh))
    # masks are for answers: an input with a mask word goes through
    result = sdk(fmesh, chat(content="%s: zonk" % marker, stream=False))
    assert result["ok"]
    assert any(marker in json.dumps(r) for r in mock_requests(fmesh))


def test_lists_are_per_tenant(fmesh):
    result = sdk(fmesh, chat(deltas=["buy ", "widgetry", " now"]), key=ACME_KEY)
    assert result["content"] == "buy " and result["finish"] == "content_filter"
    result = sdk(fmesh, chat(deltas=["buy ", "widgetry", " now"]), key=KEY)
    assert result["content"] == "buy widgetry now"
    result = sdk(fmesh, chat(content="a widgetry"), key=ACME_KEY)
    assert result["status"] == 400 and result["code"] == "content_filter"
    # and the global list applies to acme too
    result = sdk(fmesh, chat(deltas=["zonk"]), key=ACME_KEY)
    assert result["content"] == "****"


def test_matches_are_recorded_counted_and_logged_without_the_word(fmesh):
    masked = fmesh.metric("ingress", 'seekmesh_filter_matches_total{tenant="dev",action="mask"}')
    blocked_in = sum(fmesh.metric("router", 'seekmesh_filter_matches_total{tenant="acme",action="block"}', i)
                     for i in (0, 1))
    out = sdk(fmesh, chat(deltas=["a zonk and a zonk"]))
    refused = sdk(fmesh, chat(content="widgetry please"), key=ACME_KEY)
    assert out["content"] == "a **** and a ****" and refused["code"] == "content_filter"
    fmesh.wait_metric("ingress", 'seekmesh_filter_matches_total{tenant="dev",action="mask"}',
                      lambda v: v == masked + 2)
    assert sum(fmesh.metric("router", 'seekmesh_filter_matches_total{tenant="acme",action="block"}', i)
               for i in (0, 1)) == blocked_in + 1
    record = wait_record(fmesh, out["headers"]["x-request-id"])
    assert record["outcome"] == "filtered" and record["status"] == 200
    assert record["params"]["filter"] == [{"list": "global", "entry": fmesh.ids[MASK], "action": "mask"}]
    assert MASK not in json.dumps(record["params"]) and MASK not in record["response_text"]
    records = [r for r in audit_records(fmesh, tenant="acme") if r["outcome"] == "filtered"
               and r["error_code"] == "content_filter"]
    assert records and records[-1]["params"]["filter"] == [
        {"list": "acme", "entry": fmesh.ids[ACME], "action": "block"}]
    logs = fmesh.logs()
    assert "output filtered: entry %s of the global list (mask)" % fmesh.ids[MASK] in logs
    assert "input filtered: entry %s of the acme list (block)" % fmesh.ids[ACME] in logs
    assert not re.search(r"filtered:.*(zonk|widgetry)", logs)


def test_seekmeshctl_lists_tests_and_removes(fmesh):
    _, out, _ = ctl(fmesh, "filters", "list")
    assert re.search(r"%s\s+global\s+block\s+blorp" % fmesh.ids[BLOCK], out)
    assert re.search(r"%s\s+acme\s+block\s+widgetry" % fmesh.ids[ACME], out)
    _, out, _ = ctl(fmesh, "filters", "list", "--tenant", "acme")
    assert "widgetry" in out and "blorp" not in out
    _, out, _ = ctl(fmesh, "filters", "test", "ZONK then widgetry", "--tenant", "acme")
    assert "blocked after: **** then " in out
    _, out, _ = ctl(fmesh, "filters", "add", "temporary", "--tenant", "acme", "--action", "mask")
    entry = re.match(r"added (f\d+) \(mask, acme list\)", out).group(1)
    wait_everywhere(fmesh)
    assert sdk(fmesh, chat(deltas=["temporary"]), key=ACME_KEY)["content"] == "*********"
    ctl(fmesh, "filters", "remove", entry)
    wait_everywhere(fmesh)
    assert sdk(fmesh, chat(deltas=["temporary"]), key=ACME_KEY)["content"] == "temporary"
    status, _, err = ctl(fmesh, "filters", "remove", entry, check=False)
    assert status == 1 and "404" in err
    status, _, err = ctl(fmesh, "filters", "add", "x", "--action", "drop", check=False)
    assert status == 64
    status, _, err = ctl(fmesh, "filters", "add", "... !!!", check=False)
    assert status == 1 and "1 to 64 letters" in err
