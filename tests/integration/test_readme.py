"""README.md's client snippets, run as a new user runs them (only the base
URL moved to this test's mesh): the curl command and the Node program,
saved the way the README says (hello.mjs) in a directory of its own."""
import re
import shlex
import subprocess

from meshlib import REPO, echo

README = (REPO / "README.md").read_text()


def block(language, after=None):
    """The first ```language block (after the text `after`, if given)."""
    text = README[README.index(after):] if after else README
    return re.search(r"```%s\n(.*?)```" % language, text, re.S).group(1)


def here(mesh, text):
    return text.replace("127.0.0.1:8080", "%s:%d" % (mesh.host, mesh.port))


def test_readme_curl_streams_an_answer(mesh):
    command = here(mesh, block("sh", "## Point a client at it")).replace("\\\n", " ")
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    events = [e for e in result.stdout.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "data: [DONE]", result.stdout
    assert '"content":"Echo:' in result.stdout or '"content":"Echo' in result.stdout, result.stdout


def test_readme_node_snippet_runs_saved_as_the_readme_says(mesh, tmp_path):
    # the README's instruction, then its program
    intro = README[:README.index("```js")].rstrip().rsplit("\n\n", 1)[-1]
    name = re.search(r"save this as `([^`]+)`", intro).group(1)
    assert name.endswith(".mjs"), intro
    app = tmp_path / "app"
    app.mkdir()
    # `npm install openai`: the SDK the tests install from their lockfile
    (app / "node_modules").symlink_to(REPO / "tests" / "sdk" / "node_modules")
    (app / name).write_text(here(mesh, block("js")))
    result = subprocess.run(["node", name], cwd=app, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == echo("hello"), result.stdout
