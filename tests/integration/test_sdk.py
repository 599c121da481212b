"""The official openai npm SDK (tests/sdk, installed from its lockfile by
`npm ci`) against a real mesh: chat, streaming, models, tool calls and
error handling, as an application would use them."""
import os
import re
import subprocess

from meshlib import KEY, REPO

# The SDK suite's tests (node --test counts them); raise it when adding tests
MIN_PASSED = 68


def test_openai_node_sdk(mesh):
    sdk = REPO / "tests" / "sdk"
    assert (sdk / "node_modules" / "openai").exists(), "run `npm ci` in tests/sdk (make does)"
    host, port = mesh.admin_address("connector")
    env = dict(os.environ, SEEKMESH_BASE_URL="http://%s:%d/v1" % (mesh.host, mesh.port),
               SEEKMESH_API_KEY=KEY, SEEKMESH_CONNECTOR_ADMIN_URL="http://%s:%d" % (host, port))
    result = subprocess.run(["node", "--test", "--test-concurrency=1"], cwd=sdk, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    counts = dict(re.findall(r"^# (pass|fail|skipped|todo|cancelled) (\d+)$", result.stdout, re.M))
    # every test ran and passed: none skipped, and not fewer than the files hold
    assert counts.get("fail") == "0" and counts.get("cancelled") == "0", counts
    assert counts.get("skipped") == "0" and counts.get("todo") == "0", counts
    assert int(counts.get("pass", 0)) >= MIN_PASSED, counts
