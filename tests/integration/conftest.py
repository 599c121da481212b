"""Fixtures: a mesh shared by a module's tests, and fresh meshes for the
scenarios that kill processes."""
import pytest

from meshlib import Mesh

#  Shorter timeouts than production, so the fault scenarios run quickly;
#  the tests read them from the config, never hard-code them
TEST_CONFIG = {
    "mesh": {"drain_ms": 2000},
    "ingress": {"keepalive_interval_ms": 15000},
    "connector": {"first_byte_timeout_ms": 1500, "idle_timeout_ms": 1500, "connect_timeout_ms": 1000},
    "mock": {"keepalive_ms": 200},
}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    m = Mesh(tmp_path_factory.mktemp("mesh"), TEST_CONFIG).up()
    yield m
    m.down()


@pytest.fixture
def make_mesh(tmp_path_factory):
    """Builds meshes with extra config; each is stopped after the test."""
    made = []

    def make(overrides=None, env=None):
        import copy
        from meshlib import _merge
        config = _merge(copy.deepcopy(TEST_CONFIG), overrides or {})
        m = Mesh(tmp_path_factory.mktemp("mesh"), config, env).up()
        made.append(m)
        return m

    yield make
    for m in made:
        m.down()
