"""The official openai npm SDK (tests/sdk, installed from its lockfile by
`npm ci`) against a real mesh: chat, streaming, models, tool calls and
error handling, as an application would use them."""
import os
import subprocess

from meshlib import KEY, REPO


def test_openai_node_sdk(mesh):
    sdk = REPO / "tests" / "sdk"
    assert (sdk / "node_modules" / "openai").exists(), "run `npm ci` in tests/sdk (make does)"
    env = dict(os.environ, SEEKMESH_BASE_URL="http://%s:%d/v1" % (mesh.host, mesh.port),
               SEEKMESH_API_KEY=KEY)
    result = subprocess.run(["node", "--test", "--test-concurrency=1"], cwd=sdk, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "# fail 0" in result.stdout
