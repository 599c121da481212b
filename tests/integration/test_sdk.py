"""The official openai npm SDK (tests/sdk, installed from its lockfile by
`npm ci`) against a real mesh: chat, streaming, models, tool calls, error
handling and the retries x-should-retry makes it do, as an application
would use them.

When SEEKMESH_TEST_COUNTS names a file, the node tests' own counts are
written there ({"passed": N, "failed": N}), for the summary of make test."""
import json
import os
import re
import subprocess

import pytest

from conftest import TEST_CONFIG
from meshlib import KEY, REPO, Mesh, _merge

BUDGET_KEY = "sk-sdk-budget-of-one"
NARROW_KEY = "sk-sdk-reasoner-only"

# The SDK suite's tests (node --test counts them); raise it when adding tests
MIN_PASSED = 81


@pytest.fixture(scope="module")
def sdk_mesh(tmp_path_factory):
    import copy
    keys = json.loads((REPO / "compose/config/local.json").read_text())["keys"] + [
        {"id": "sdk-budget", "key": BUDGET_KEY, "tenant": "sdk", "budget": 1},
        {"id": "sdk-narrow", "key": NARROW_KEY, "tenant": "sdk", "models": ["deepseek-reasoner"]}]
    # retry.test.js makes the upstream fail on purpose, many times in a row:
    # what it tests is the client's side, so the mesh does not eject the
    # mock or open the model's breaker (test_routing.py tests those)
    config = _merge(copy.deepcopy(TEST_CONFIG), {
        "keys": keys, "router": {"outlier": {"consecutive_failures": 1000},
                                 "breaker": {"consecutive_failures": 1000}}})
    m = Mesh(tmp_path_factory.mktemp("mesh"), config).up()
    yield m
    m.down()


def test_openai_node_sdk(sdk_mesh):
    mesh = sdk_mesh
    sdk = REPO / "tests" / "sdk"
    assert (sdk / "node_modules" / "openai").exists(), "run `npm ci` in tests/sdk (make does)"
    host, port = mesh.admin_address("connector")
    env = dict(os.environ, SEEKMESH_BASE_URL="http://%s:%d/v1" % (mesh.host, mesh.port),
               SEEKMESH_API_KEY=KEY, SEEKMESH_CONNECTOR_ADMIN_URL="http://%s:%d" % (host, port),
               SEEKMESH_BUDGET_KEY=BUDGET_KEY, SEEKMESH_NARROW_KEY=NARROW_KEY)
    result = subprocess.run(["node", "--test", "--test-concurrency=1", "--test-reporter=tap"], cwd=sdk,
                            env=env, capture_output=True, text=True, timeout=300)
    counts = {name: int(n) for name, n in re.findall(r"^# (pass|fail|skipped|todo|cancelled) (\d+)$",
                                                     result.stdout, re.M)}
    if os.environ.get("SEEKMESH_TEST_COUNTS"):
        with open(os.environ["SEEKMESH_TEST_COUNTS"], "w") as f:
            json.dump({"passed": counts.get("pass", 0),
                       "failed": counts.get("fail", 0) + counts.get("cancelled", 0),
                       "skipped": counts.get("skipped", 0) + counts.get("todo", 0)}, f)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    # every test ran and passed: none skipped, and not fewer than the files hold
    assert counts.get("fail") == 0 and counts.get("cancelled") == 0, counts
    assert counts.get("skipped") == 0 and counts.get("todo") == 0, counts
    assert counts.get("pass", 0) >= MIN_PASSED, counts
