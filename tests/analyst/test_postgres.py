"""PostgreSQL: the sample loaded into a real server started for this module
(Debian's postgresql), the application connected as a role that may only
SELECT, and the guard's layers there: the read-only transaction, the
statement timeout (with a watchdog behind it), the row limit through a
server-side cursor; the schema as the prompt shows it."""
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from analyst import prompt, sample
from analyst.db import PostgresDatabase, QueryError, open_database

from analyst_fixtures import REPO

psycopg2 = pytest.importorskip("psycopg2", reason="python3-psycopg2 (scripts/deps --test)")


def _bin(name):
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/%s" % name))
    if not found:
        pytest.fail("PostgreSQL's server is not installed (scripts/deps --test installs it)")
    return found[-1]


class Postgres:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="analyst-pg-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        # the server will not run as root: as the postgres user, when we are root
        self.prefix = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self.prefix = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run(_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        self._run(_bin("pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w", "-o",
                  "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off" % (self.port, self.dir),
                  "start")
        self.data = data

    def _run(self, *args):
        done = subprocess.run(self.prefix + list(args), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, (args, done.stdout, done.stderr)

    def dsn(self, user, db="sales"):
        return "postgresql://%s@127.0.0.1:%d/%s" % (user, self.port, db)

    def stop(self):
        try:
            self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg():
    server = Postgres()
    try:
        admin = psycopg2.connect(server.dsn("postgres", "postgres"))
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute("CREATE DATABASE sales")
        admin.close()
        owner = psycopg2.connect(server.dsn("postgres"))
        sample.make_postgres(owner)
        with owner.cursor() as cur:
            cur.execute("CREATE ROLE analyst LOGIN")
            cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO analyst")
        owner.commit()
        owner.close()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def db(pg):
    d = open_database(pg.dsn("analyst"), time_limit_s=1.0, max_rows=50)
    assert isinstance(d, PostgresDatabase) and d.dialect == "postgresql"
    yield d
    d.close()


def test_the_sample_answers_the_same_in_postgresql(db, sample_path):
    sql = ("SELECT r.name AS region, ROUND(SUM(o.amount), 2) AS revenue FROM orders o "
           "JOIN customers c ON c.customer_id = o.customer_id "
           "JOIN regions r ON r.region_id = c.region_id WHERE o.status = 'completed' "
           "AND o.order_date >= '2024-01-01' GROUP BY r.name ORDER BY r.name")
    from analyst.db import SqliteDatabase
    assert db.run(sql).rows == SqliteDatabase(sample_path).run(sql).rows
    result = db.run("SELECT order_date, discount, amount FROM orders ORDER BY order_id LIMIT 1")
    assert isinstance(result.rows[0][0], str) and result.rows[0][0].startswith("2021-01-")
    assert all(isinstance(v, (int, float)) for v in result.rows[0][1:])


WRITES = ["INSERT INTO regions VALUES (9, 'Nowhere')", "UPDATE regions SET name = 'x'",
          "DELETE FROM orders", "CREATE TABLE t (x int)",
          "WITH d AS (DELETE FROM orders RETURNING *) SELECT COUNT(*) FROM d",
          "SELECT * INTO copy FROM regions"]


def test_writes_are_refused_past_the_check(db, pg):
    # past the statement check: the server-side cursor takes only a query
    for sql in WRITES:
        with pytest.raises(QueryError):
            db._run(sql, 10, 1.0)
    # and the session itself is read-only, whatever is sent on it
    conn = db._acquire()
    try:
        for sql in WRITES:
            with conn.cursor() as cur, pytest.raises(psycopg2.Error) as e:
                cur.execute(sql)
            conn.rollback()
            assert "read-only transaction" in str(e.value), (sql, e.value)
    finally:
        db._release(conn)
    # and the role could not have written anyway
    check = psycopg2.connect(pg.dsn("analyst"))
    with check.cursor() as cur, pytest.raises(psycopg2.Error) as e:
        cur.execute("DELETE FROM regions")
    assert "permission denied" in str(e.value)
    check.close()
    assert db.run("SELECT COUNT(*) FROM regions").rows == [[5]]


def test_statement_timeout_and_watchdog(db):
    started = time.monotonic()
    with pytest.raises(QueryError) as e:
        db.run("SELECT pg_sleep(10)")
    assert "longer than the time limit (1 s)" in str(e.value)
    assert time.monotonic() - started < 3
    # a query that turns the timeout off for itself: the timeout armed at
    # its start, or the watchdog, still stops it
    started = time.monotonic()
    with pytest.raises(QueryError):
        db._run("SELECT set_config('statement_timeout', '0', true), pg_sleep(10)", 10, 1.0)
    assert time.monotonic() - started < 4
    # the pooled connection is fine afterwards
    assert db.run("SELECT 1 AS one").rows == [[1]]


def test_row_limit_through_a_server_side_cursor(db):
    result = db.run("SELECT order_id FROM orders ORDER BY order_id")
    assert len(result.rows) == 50 and result.truncated and result.rows[-1] == [50]
    assert db.run("SELECT order_id FROM orders ORDER BY order_id LIMIT 50").truncated is False


def test_errors_come_back_in_the_databases_words(db):
    with pytest.raises(QueryError) as e:
        db.run("SELECT nope FROM orders")
    assert str(e.value).startswith('column "nope" does not exist')
    assert db.run("SELECT COUNT(*) FROM products").rows == [[36]]


def test_schema_for_the_prompt(db):
    tables = {t.name: t for t in db.schema()}
    assert sorted(tables) == ["customers", "orders", "products", "regions"]
    assert ("region_id", "regions", "region_id") in tables["customers"].foreign_keys
    status = next(c for c in tables["orders"].columns if c.name == "status")
    assert status.distinct_all and sorted(status.values) == ["cancelled", "completed", "returned"]
    system = prompt.system_message(db, "2025-01-01")
    assert "SQL dialect: PostgreSQL." in system
    assert "customer_id integer REFERENCES customers(customer_id)" in system
    assert "order_date date,  -- 2021-01-01 .. 2024-12-31" in system


def test_command_line_with_a_dsn(pg):
    done = subprocess.run([sys.executable, str(REPO / "examples/analyst/bin/analyst"), "sql",
                           "SELECT name FROM regions ORDER BY region_id", "--db",
                           pg.dsn("analyst")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:4] == ["SELECT", "name", "FROM", "regions"]
    assert "North" in done.stdout and "5 rows · chart: none" in done.stdout
    bad = subprocess.run([sys.executable, str(REPO / "examples/analyst/bin/analyst"), "sql",
                          "SELECT 1", "--db", "postgresql://nobody@127.0.0.1:1/x"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "cannot connect to PostgreSQL" in bad.stderr
