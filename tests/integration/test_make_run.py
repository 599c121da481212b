"""`make run` as a new user runs it, on this test's ports and run directory
(SEEKMESH_CONFIG, SEEKMESH_RUN_DIR): it stops the mesh however it ends.

- `make run | tee log`, then Ctrl-C: SIGINT to the whole foreground process
  group, as a terminal sends it: nothing of the mesh is left running
- the pipe closed under it: the mesh is stopped
- `scripts/mesh down` from another shell ends `make run`, with a message;
  `scripts/mesh up` from another shell then takes the admin token make run
  printed (kept in the run directory, mode 0600), which seekmeshctl finds
  there by itself."""
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

from meshlib import BIN, REPO, Mesh

UP_TIMEOUT = 120        # make run installs nothing here, but builds (a no-op) first


def leftovers(run_dir):
    """Live processes started for run_dir (the supervisor's marker)."""
    marker = b"SEEKMESH_MESH_RUN_DIR=" + str(run_dir).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("%s: not within %s s" % (what, timeout))


class MakeRun:
    """`make run` in a session of its own (a terminal's foreground group),
    through `shell` (e.g. "make run | tee LOG")."""

    def __init__(self, tmp_path, shell):
        self.mesh = Mesh(tmp_path, {"mesh": {"drain_ms": 1000}})
        self.run_dir = self.mesh.run_dir
        self.out = tmp_path / "stdout"
        self.err = tmp_path / "stderr"
        self.log = tmp_path / "tee.log"
        env = {k: v for k, v in self.mesh.env.items() if k != "SEEKMESH_ADMIN_TOKEN"}
        self.env = env
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(["bash", "-c", shell.replace("LOG", str(self.log))],
                                         cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=err, start_new_session=True)

    def wait_up(self, where):
        wait_for(lambda: where.exists() and "Logs follow" in where.read_text()
                 or self.proc.poll() is not None, UP_TIMEOUT, "make run up")
        assert self.proc.poll() is None, self.err.read_text()[-3000:]

    def stderr(self):
        return self.err.read_text()

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        subprocess.run([str(REPO / "scripts/mesh"), "down"], env=self.env, capture_output=True,
                       timeout=60)


def ctl(run_dir, *args, token=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
    env["SEEKMESH_RUN_DIR"] = str(run_dir)
    if token:
        env["SEEKMESH_ADMIN_TOKEN"] = token
    return subprocess.run([str(BIN / "seekmeshctl"), *args], env=env, capture_output=True, text=True,
                          timeout=10)


def test_ctrl_c_through_a_pipe_stops_the_mesh(tmp_path):
    run = MakeRun(tmp_path, "make run | tee LOG")
    try:
        run.wait_up(run.log)
        mesh = run.mesh
        status, _, body = mesh.chat({"model": "deepseek-chat",
                                     "messages": [{"role": "user", "content": "hi"}]})
        assert status == 200, body
        # the admin token: kept in the run directory, for its owner only,
        # and seekmeshctl finds it there without being told
        token_file = run.run_dir / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        host, port = mesh.admin_address("router")
        listed = ctl(run.run_dir, "--admin", "%s:%d" % (host, port), "models", "list")
        assert listed.returncode == 0 and "deepseek-chat" in listed.stdout, listed.stderr
        assert leftovers(run.run_dir)

        # Ctrl-C: SIGINT to the foreground process group (make, the script,
        # tail and tee alike)
        os.killpg(run.proc.pid, signal.SIGINT)
        run.proc.wait(timeout=30)
        wait_for(lambda: not leftovers(run.run_dir), 10, "every process of the mesh gone")
        assert not (run.run_dir / "supervisor.pid").exists()
        assert "seekmesh: stopping the mesh" in run.stderr(), run.stderr()
    finally:
        run.kill()


def test_a_closed_pipe_stops_the_mesh(tmp_path):
    # the reader goes away once it has seen the banner, while make run
    # writes nothing more (the logs are quiet)
    run = MakeRun(tmp_path, "make run | sed '/Logs follow/q' > LOG")
    try:
        run.wait_up(run.log)
        run.proc.wait(timeout=30)
        wait_for(lambda: not leftovers(run.run_dir), 15, "every process of the mesh gone")
        assert "seekmesh: stopping the mesh" in run.stderr(), run.stderr()
    finally:
        run.kill()


def test_mesh_down_elsewhere_ends_make_run_and_up_keeps_the_token(tmp_path):
    run = MakeRun(tmp_path, "make run")
    try:
        run.wait_up(run.out)
        token = (run.run_dir / "admin-token").read_text().strip()
        assert len(token) >= 32
        other = {k: v for k, v in run.env.items() if k != "SEEKMESH_ADMIN_TOKEN"}
        down = subprocess.run([str(REPO / "scripts/mesh"), "down"], env=other, capture_output=True,
                              text=True, timeout=60)
        assert down.returncode == 0, down.stderr
        run.proc.wait(timeout=15)
        assert "the mesh was stopped from elsewhere" in run.stderr(), run.stderr()
        assert run.proc.returncode == 0

        # up again from another shell, without the token in its environment:
        # the router takes the one make run printed
        up = subprocess.run([str(REPO / "scripts/mesh"), "up", "-c", str(run.mesh.config_path)],
                            env=other, capture_output=True, text=True, timeout=60)
        assert up.returncode == 0, up.stderr
        status, body = run.mesh.admin_call("GET", "/admin/models", token=token)
        assert status == 200, body
        host, port = run.mesh.admin_address("router")
        listed = ctl(run.run_dir, "--admin", "%s:%d" % (host, port), "models", "list")
        assert listed.returncode == 0, listed.stderr
    finally:
        run.kill()
