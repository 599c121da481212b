"""Helpers the customer-service tests share (sessions, takeover, the word
filter): a chat through the official openai npm SDK (tests/sdk/sdk_call.mjs),
seekmeshctl against a mesh's router, the requests the mock received, and
the audit records."""
import copy
import json
import os
import subprocess
import time

from conftest import TEST_CONFIG
from meshlib import ADMIN_TOKEN, BIN, KEY, REPO, Mesh, _merge

SDK_DIR = REPO / "tests" / "sdk"


def module_mesh(tmp_path_factory, overrides):
    """A mesh for a module's tests (a generator for a fixture)."""
    mesh = Mesh(tmp_path_factory.mktemp("mesh"), _merge(copy.deepcopy(TEST_CONFIG), overrides)).up()
    yield mesh
    mesh.down()


def sdk_args(mesh, body, key=KEY, headers=None, timeout_ms=60000):
    assert (SDK_DIR / "node_modules" / "openai").exists(), "run `npm ci` in tests/sdk (make does)"
    spec = {"baseURL": "http://%s:%d/v1" % (mesh.host, mesh.port), "apiKey": key, "body": body,
            "headers": headers or {}, "timeoutMs": timeout_ms}
    return ["node", str(SDK_DIR / "sdk_call.mjs"), json.dumps(spec)]


def sdk(mesh, body, key=KEY, headers=None, timeout=90):
    """One request through the openai SDK: its result (see sdk_call.mjs)."""
    result = subprocess.run(sdk_args(mesh, body, key, headers), capture_output=True, text=True,
                            timeout=timeout, cwd=SDK_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def sdk_start(mesh, body, key=KEY, headers=None):
    """The same in the background: .finish() gives the result."""
    process = subprocess.Popen(sdk_args(mesh, body, key, headers), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=SDK_DIR)

    class Call:
        def finish(self, timeout=90):
            out, err = process.communicate(timeout=timeout)
            assert process.returncode == 0, out + err
            return json.loads(out)

        def done(self):
            return process.poll() is not None
    return Call()


def ctl(mesh, *args, instance=0, check=True, token=ADMIN_TOKEN):
    """seekmeshctl against router `instance`: (exit status, stdout, stderr)."""
    host, port = mesh.admin_address("router", instance)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
    env["SEEKMESH_ADMIN_TOKEN"] = token
    result = subprocess.run([str(BIN / "seekmeshctl"), "--admin", "%s:%d" % (host, port), *args],
                            env=env, capture_output=True, text=True, timeout=30)
    if check:
        assert result.returncode == 0, "seekmeshctl %s: %d\n%s%s" % (
            " ".join(args), result.returncode, result.stdout, result.stderr)
    return result.returncode, result.stdout, result.stderr


def mock_requests(mesh):
    """The request bodies the mock received last, oldest first."""
    status, body = mesh.admin_call("GET", "/mock/requests", token=None, service="mock")
    assert status == 200, body
    return body["requests"]


def mock_forget(mesh):
    mesh.admin_call("DELETE", "/mock/requests", token=None, service="mock")


def wait_for(predicate, timeout=10, interval=0.02, what="the condition"):
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > deadline:
            raise AssertionError("%s did not hold within %ss" % (what, timeout))
        time.sleep(interval)


def audit_records(mesh, **filters):
    """Every audit record the mesh's audit service stored (decrypted)."""
    args = [str(BIN / "seekmeshctl"), "--json", "audit", "query", "--since", "1h", "--decrypt",
            "--dir", str(mesh.run_dir / "audit"), "--limit", "100000"]
    for name, value in filters.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def wait_record(mesh, request_id, timeout=10):
    """The audit record of a request, once stored."""
    def find():
        return next((r for r in audit_records(mesh) if r.get("id") == request_id), None)
    return wait_for(find, timeout, 0.2, "the audit record of %s" % request_id)
