"""TLS at both ends, with real certificates from a test CA made here.

Clients: HTTP/1.1 and h2 over TLS 1.3 (curl, openssl s_client); TLS 1.2 is
refused; each of the three standard TLS 1.3 suites works.
Upstream: the connector calls an https:// upstream (the mock over TLS),
verifying its certificate; with the wrong CA the call fails, cleanly."""
import json
import subprocess

import pytest

from meshlib import KEY, Mesh

SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "%s.key" % name, "-out", "%s.pem" % name, "-days", "2",
            "-subj", "/CN=seekmesh test %s" % name, cwd=directory)


def make_cert(directory, ca, name):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "%s.key" % name, "-out", "%s.csr" % name, "-subj", "/CN=127.0.0.1",
            cwd=directory)
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "%s.csr" % name, "-CA", "%s.pem" % ca, "-CAkey", "%s.key" % ca,
            "-CAcreateserial", "-out", "%s.pem" % name, "-days", "2", "-extfile", "san.ext",
            cwd=directory)


@pytest.fixture(scope="module")
def tls_mesh(tmp_path_factory):
    certs = tmp_path_factory.mktemp("certs")
    make_ca(certs, "ca")
    make_ca(certs, "other-ca")
    make_cert(certs, "ca", "server")
    endpoint = "https://127.0.0.1:9101/v1/chat/completions"
    overrides = {
        "ingress": {"tls_listen": "127.0.0.1:8443", "tls_cert": str(certs / "server.pem"),
                    "tls_key": str(certs / "server.key")},
        "mock": {"tls_listen": "127.0.0.1:9101", "tls_cert": str(certs / "server.pem"),
                 "tls_key": str(certs / "server.key")},
    }
    mesh = Mesh(tmp_path_factory.mktemp("mesh"), overrides)
    models = mesh.config["models"]
    auth = models[0]["auth"]
    tls_port = int(mesh.config["mock"]["tls_listen"].rsplit(":", 1)[1])
    endpoint = "https://127.0.0.1:%d/v1/chat/completions" % tls_port
    models.append({"name": "deepseek-chat-tls", "endpoint": endpoint, "upstream_model": "deepseek-chat",
                   "auth": auth, "ca_file": str(certs / "ca.pem")})
    models.append({"name": "deepseek-chat-wrong-ca", "endpoint": endpoint, "upstream_model": "deepseek-chat",
                   "auth": auth, "ca_file": str(certs / "other-ca.pem")})
    models.append({"name": "deepseek-chat-wss", "endpoint": endpoint.replace("https", "wss"),
                   "upstream_model": "deepseek-chat", "auth": auth, "ca_file": str(certs / "ca.pem")})
    mesh.config_path.write_text(json.dumps(mesh.config))
    mesh.up()
    mesh.tls_port = int(mesh.config["ingress"]["tls_listen"].rsplit(":", 1)[1])
    mesh.certs = certs
    yield mesh
    mesh.down()


def curl(mesh, *args):
    url = "https://127.0.0.1:%d/v1/chat/completions" % mesh.tls_port
    result = subprocess.run(["curl", "-sS", "--cacert", str(mesh.certs / "ca.pem"), "-D", "-", url,
                             "-H", "Authorization: Bearer " + KEY, *args],
                            capture_output=True, timeout=20)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()       # bytes as sent: no newline translation


def body(model="deepseek-chat", stream=False):
    return json.dumps({"model": model, "stream": stream,
                       "messages": [{"role": "user", "content": "over tls"}]})


def test_h2_and_http11_over_tls13(tls_mesh):
    out = curl(tls_mesh, "--http2", "-d", body())
    assert out.startswith("HTTP/2 200")
    assert "x-request-id:" in out
    assert '"content":"Echo: over tls"' in out
    out = curl(tls_mesh, "--http2", "-N", "-d", body(stream=True))
    assert out.startswith("HTTP/2 200")
    assert "content-type: text/event-stream" in out
    assert out.rstrip().endswith("data: [DONE]")
    assert "\r" not in out.split("\r\n\r\n", 1)[1]
    out = curl(tls_mesh, "--http1.1", "-d", body(stream=True))
    assert out.startswith("HTTP/1.1 200") and out.rstrip().endswith("data: [DONE]")


def test_post_without_a_body_over_h2_and_http11(tls_mesh):
    # curl -X POST with no -d: no body at all (h2: END_STREAM on the headers)
    for version in ("--http2", "--http1.1"):
        out = curl(tls_mesh, version, "-X", "POST", "--max-time", "5")
        assert out.startswith(("HTTP/2 400", "HTTP/1.1 400")), out
        assert "the request body is empty" in out, out


def s_client(mesh, *args):
    return subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % mesh.tls_port,
                           "-CAfile", str(mesh.certs / "ca.pem"), "-verify_return_error", *args],
                          input="", capture_output=True, text=True, timeout=10)


def test_tls12_refused_tls13_suites_accepted(tls_mesh):
    assert s_client(tls_mesh, "-tls1_2").returncode != 0
    for suite in SUITES:
        result = s_client(tls_mesh, "-tls1_3", "-ciphersuites", suite)
        assert result.returncode == 0, result.stderr
        assert "Protocol  : TLSv1.3" in result.stdout or "TLSv1.3" in result.stdout
        assert suite in result.stdout


def test_upstream_https_verified(tls_mesh):
    for model in ("deepseek-chat-tls", "deepseek-chat-wss"):
        status, _, reply = tls_mesh.chat({"model": model, "messages": [{"role": "user", "content": "secure"}]})
        assert status == 200, reply
        assert reply["choices"][0]["message"]["content"] == "Echo: secure"
        stream = tls_mesh.stream({"model": model, "messages": [{"role": "user", "content": "secure"}]})
        stream.read_all()
        assert stream.content() == "Echo: secure"
        stream.close()
    # a certificate from a CA we do not trust: refused, and said why
    status, headers, reply = tls_mesh.chat({"model": "deepseek-chat-wrong-ca",
                                            "messages": [{"role": "user", "content": "x"}]})
    assert status == 502 and reply["error"]["code"] == "upstream_unreachable"
    assert "certificate" in reply["error"]["message"]
