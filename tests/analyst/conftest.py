"""examples/analyst's own tests: the application's modules on their own, with
real databases (a generated SQLite file, a PostgreSQL server started for the
test module) and, where a model answers, the real seekmesh-mock."""
import pytest

import analyst_fixtures  # noqa: F401  (puts examples/analyst on sys.path)
from analyst import sample


@pytest.fixture(scope="session")
def sample_path(tmp_path_factory):
    return sample.make_sqlite(str(tmp_path_factory.mktemp("sample") / "sales.db"))
