"""Scenario 17 of RELIABILITY.md: nobody gets onto the bus without the
mesh's keys.

A rogue process (pyzmq, from Debian's python3-zmq) connects to every port
the mesh binds and sends well-formed messages of the protocol (msgpack, as
proto/PROTOCOL.md describes them): a connector's READY with a large
capacity, a REQUEST authenticated by the dev key's SHA-256, HEAD/CHUNK/END
for a guessable request, an AUDIT record.  Plain, and with a CURVE key the
mesh does not know.  None is delivered: clients keep being served by the
real connector, the audit store holds only real requests, and a capture of
the loopback traffic (tcpdump) never shows a prompt in clear."""
import hashlib
import os
import re
import subprocess
import time

import msgpack
import pytest
import zmq

from meshlib import KEY, REPO, Mesh

PROMPT = "the secret prompt 5150"


VERSION = int(re.search(r"#define MESH_PROTO_VERSION\s+(\d+)",
                        (REPO / "proto/mesh_msg.h").read_text()).group(1))


def _message(type_code, request_id, *fields):
    return msgpack.packb(["SM", VERSION, type_code, request_id, *fields], use_bin_type=True)


READY, REQUEST, HEAD, CHUNK, END, AUDIT, STOP, FILTERS, RECORD = 9, 1, 3, 4, 5, 15, 18, 20, 21
FAKE_ID = "01JD0000000000000000000042"


def _rogue_sockets(ctx, mesh, curve_keys):
    """A client of every port the mesh binds, and what it will claim there."""
    eff = mesh.effective()
    targets = [("connector", zmq.DEALER, eff["router"]["connector_listen"], b"connector-rogue"),
               ("ingress", zmq.PUSH, eff["router"]["listen"], None),
               ("upstream", zmq.PUSH, eff["ingress"]["reply_endpoint"], None),
               ("auditor", zmq.DEALER, eff["audit"]["listen"], b"ingress-rogue-1-1")]
    sockets = []
    for claim, kind, endpoint, identity in targets:
        s = ctx.socket(kind)
        s.linger = 0
        if identity:
            s.setsockopt(zmq.ROUTING_ID, identity)
        if curve_keys:
            s.curve_publickey, s.curve_secretkey = zmq.curve_keypair()
            # the server's public key is no secret: a rogue may know it
            s.curve_serverkey = curve_keys[endpoint].encode()
        s.connect(endpoint)
        sockets.append((claim, s))
    return sockets


def _server_keys(mesh):
    eff = mesh.effective()
    keys = {}
    for role, endpoint in (("router", eff["router"]["connector_listen"]),
                           ("router", eff["router"]["listen"]),
                           ("ingress", eff["ingress"]["reply_endpoint"]),
                           ("audit", eff["audit"]["listen"])):
        cert = (mesh.run_dir / "curve" / ("%s.cert" % role)).read_text()
        keys[endpoint] = next(line.split('"')[1] for line in cert.splitlines() if "public-key" in line)
    return keys


def _attack(sockets):
    key_hash = hashlib.sha256(KEY.encode()).digest()
    body = ('{"model":"deepseek-chat","messages":[{"role":"user","content":"%s"}]}' % PROMPT).encode()
    messages = {
        "connector": [_message(READY, "", "connector-rogue", 100000, 0)],
        "ingress": [_message(REQUEST, FAKE_ID, 1, 1, "tcp://127.0.0.1:1", 1, key_hash, "deepseek-chat",
                             False, body, "", "", 100, 0, "", "")],
        "upstream": [_message(HEAD, FAKE_ID, 1, 1, 200, "deepseek-chat", "", "t", "k", "", "", 0, "", ""),
                     _message(CHUNK, FAKE_ID, 1, 1, 0, b'{"injected":true}')],
        "auditor": [_message(AUDIT, "", "ingress-rogue-1-1", 1, b"not a record")],
    }
    for _ in range(3):
        for claim, s in sockets:
            for message in messages[claim]:
                try:
                    s.send(message, zmq.NOBLOCK)
                except zmq.Again:
                    pass                    # never connected: the point
        time.sleep(0.1)


@pytest.fixture(scope="module")
def secure_mesh(tmp_path_factory):
    mesh = Mesh(tmp_path_factory.mktemp("mesh"),
                {"mesh": {"instances": {"connector": 1}}}).up()
    yield mesh
    mesh.down()


@pytest.mark.parametrize("with_curve_key", [False, True])
def test_rogue_process_gets_nothing_in(secure_mesh, with_curve_key):
    mesh = secure_mesh
    refused = mesh.metric("router", 'seekmesh_curve_handshakes_total{result="refused"}')
    ctx = zmq.Context()
    sockets = _rogue_sockets(ctx, mesh, _server_keys(mesh) if with_curve_key else None)
    try:
        _attack(sockets)
        # the real clients are served by the real connector, all of them
        for i in range(10):
            status, _, body = mesh.chat({"model": "deepseek-chat",
                                         "messages": [{"role": "user", "content": "real %d" % i}]})
            assert status == 200 and body["choices"][0]["message"]["content"] == "Echo: real %d" % i
        # nothing of the rogue's was taken: no rogue connector, no request
        # of its id, nothing injected
        assert mesh.metric("router", "seekmesh_router_connectors") == 1
        assert "connector-rogue" not in mesh.logs("router-0")
        assert FAKE_ID not in mesh.logs()
        if with_curve_key:
            # each key the mesh does not know was turned away at the handshake
            mesh.wait_metric("router", 'seekmesh_curve_handshakes_total{result="refused"}',
                             lambda v: v >= refused + 2, timeout=3)
    finally:
        for _, s in sockets:
            s.close()
        ctx.term()


def _cert_key(mesh, role, name):
    text = (mesh.run_dir / "curve" / ("%s.cert_secret" % role)).read_text()
    return next(line.split('"')[1] for line in text.splitlines() if name in line)


def test_a_connector_cannot_speak_for_a_router(secure_mesh):
    """A process holding a connector's keys is let onto the ingress's reply
    endpoint (connectors answer clients there), but STOP, FILTERS and RECORD
    speak for a router: the ingress drops them from anyone else."""
    mesh = secure_mesh
    eff = mesh.effective()
    unexpected = 'seekmesh_ingress_bad_messages_total{reason="unexpected"}'
    before = mesh.metric("ingress", unexpected)
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.linger = 0
    s.curve_publickey = _cert_key(mesh, "connector", "public-key").encode()
    s.curve_secretkey = _cert_key(mesh, "connector", "secret-key").encode()
    s.curve_serverkey = _server_keys(mesh)[eff["ingress"]["reply_endpoint"]].encode()
    s.connect(eff["ingress"]["reply_endpoint"])
    try:
        lists = b'{"version":99,"words":[{"id":"f1","tenant":null,"word":"real","action":"block"}]}'
        for message in (_message(FILTERS, "", "router-rogue", 99, lists),
                        _message(RECORD, "", "router-rogue", b"not a record"),
                        _message(STOP, FAKE_ID, 1, 1, "stop")):
            s.send(message)
        mesh.wait_metric("ingress", unexpected, lambda v: v >= before + 3, timeout=5)
        assert mesh.metric("ingress", "seekmesh_ingress_filter_version") != 99
        status, _, body = mesh.chat({"model": "deepseek-chat",
                                     "messages": [{"role": "user", "content": "real words"}]})
        assert status == 200 and body["choices"][0]["message"]["content"] == "Echo: real words"
        assert "only routers send it" in mesh.logs("ingress-0")
    finally:
        s.close()
        ctx.term()


def _capture(mesh, tmp_path):
    """The client's HTTP and the mesh's ZeroMQ links, captured on loopback
    while chats and streams go through: (everything, the links alone)."""
    eff = mesh.effective()
    bus = sorted({int(e.rsplit(":", 1)[1]) for e in (eff["router"]["listen"], eff["router"]["connector_listen"],
                                                     eff["ingress"]["reply_endpoint"], eff["audit"]["listen"])})
    every = bus + [mesh.port]
    pcap = tmp_path / "all.pcap"
    capture = subprocess.Popen(["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-w", str(pcap)] +
                               " or ".join("port %d" % p for p in every).split(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on lo" in capture.stderr.readline()
        time.sleep(0.2)
        for i in range(5):
            body = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "%s %d" % (PROMPT, i)}]}
            assert mesh.chat(body)[0] == 200
            stream = mesh.stream(dict(body, stream=True))
            stream.read_all()
            assert stream.status == 200
        time.sleep(0.5)
    finally:
        capture.terminate()
        capture.wait(5)
    only_bus = tmp_path / "bus.pcap"
    subprocess.run(["tcpdump", "-r", str(pcap), "-w", str(only_bus)] +
                   " or ".join("port %d" % p for p in bus).split(), check=True, capture_output=True)
    return pcap.read_bytes(), only_bus.read_bytes()


def test_captured_traffic_shows_no_prompt(secure_mesh, tmp_path):
    """The links between the services carry ciphertext: a capture of the
    mesh's ZeroMQ ports never contains a prompt, while the client's plain
    HTTP in the same capture does."""
    everything, bus = _capture(secure_mesh, tmp_path)
    assert PROMPT.encode() in everything, "the client's HTTP carries the prompt in clear"
    assert len(bus) > 4000, "the capture holds the mesh's own traffic"
    assert PROMPT.encode() not in bus and b"Echo: " not in bus


def test_the_capture_would_see_a_plain_bus(tmp_path):
    """The same capture of a mesh with CURVE off (allowed on loopback) finds
    the prompt on the links: the check above can fail."""
    (tmp_path / "plain").mkdir()
    mesh = Mesh(tmp_path / "plain", env={"SEEKMESH_MESH_CURVE": "false"}).up()
    try:
        _, bus = _capture(mesh, tmp_path)
        assert PROMPT.encode() in bus
        assert mesh.metric("router", "seekmesh_curve_enabled") == 0
    finally:
        mesh.down()
