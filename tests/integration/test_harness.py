"""The harness itself: a mesh whose process crashed fails the test that ran
it, unless the test killed that process itself."""
import os
import signal
import time

import pytest

from meshlib import Mesh


def _wait_restarted(mesh, name, old, timeout=5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if mesh.pid(name) != old:
                return
        except (AssertionError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError("%s was not restarted" % name)


def test_a_crash_the_test_did_not_cause_fails_it(tmp_path):
    mesh = Mesh(tmp_path, env={"SEEKMESH_MESH_SERVICES": "mock"}).up()
    pid = mesh.pid("mock-0")
    os.kill(pid, signal.SIGSEGV)                 # not through mesh.kill: a "crash"
    _wait_restarted(mesh, "mock-0", pid)
    # killed by the signal; in the ASan build, ASan's handler reports the
    # SEGV and exits with a status instead, and the supervisor restarts it
    with pytest.raises(AssertionError, match=r"mock-0 pid %d (killed by SIGSEGV|exited with status "
                       r"\d+ \(and was restarted\))" % pid):
        mesh.down()


def test_a_process_the_test_killed_is_not_a_failure(tmp_path):
    mesh = Mesh(tmp_path, env={"SEEKMESH_MESH_SERVICES": "mock"}).up()
    pid = mesh.kill("mock-0", signal.SIGSEGV)
    _wait_restarted(mesh, "mock-0", pid)
    mesh.down()                                  # no AssertionError
