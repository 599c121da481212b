"""The SQL guard: the statement check, and behind it the read-only SQLite
connection, the time limit and the row limit, each shown to hold on its own."""
import time

import pytest

from analyst import guard
from analyst.db import QueryError, SqliteDatabase
from analyst.guard import GuardError


@pytest.mark.parametrize("sql", [
    "SELECT 1",
    "select count(*) from orders;",
    "  -- a comment first\nSELECT name FROM regions ;  -- and after\n",
    "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
    "SELECT 'DELETE FROM orders; DROP TABLE x' AS text",
    "SELECT \"update\", [insert], `drop` FROM t",
    "SELECT replace(name, 'a', 'b') FROM regions",
    "SELECT name FROM regions /* ; DELETE FROM regions */",
    "SELECT 'it''s; fine'",
])
def test_one_select_is_allowed(sql):
    statement = guard.check(sql)
    assert statement.lstrip().upper().startswith(("SELECT", "WITH"))
    assert not statement.rstrip().endswith(";")


@pytest.mark.parametrize("sql, says", [
    ("", "empty"),
    ("   -- nothing\n", "only comments"),
    ("DELETE FROM orders", "starts with DELETE"),
    ("UPDATE orders SET amount = 0", "starts with UPDATE"),
    ("INSERT INTO regions VALUES (9, 'x')", "starts with INSERT"),
    ("DROP TABLE orders", "starts with DROP"),
    ("PRAGMA writable_schema = 1", "starts with PRAGMA"),
    ("ATTACH DATABASE 'x.db' AS x", "starts with ATTACH"),
    ("VACUUM INTO '/tmp/copy.db'", "starts with VACUUM"),
    ("SELECT 1; SELECT 2", "only one statement is allowed, the query has 2"),
    ("SELECT 1; DELETE FROM orders", "only one statement"),
    ("SELECT 1;;DELETE FROM orders;", "only one statement"),
    ("WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", "DELETE is refused"),
    ("SELECT * INTO copy FROM orders", "INTO is refused"),
    ("SELECT * FROM orders FOR UPDATE", "UPDATE is refused"),
    ("REPLACE INTO regions VALUES (1, 'x')", "starts with REPLACE"),
    ("SELECT load_extension('x')", "load_extension() is not allowed"),
    ("SELECT 'unclosed", "never closed"),
    ("SELECT 1 /* unclosed", "never closed"),
    ("EXPLAIN SELECT 1", "starts with EXPLAIN"),
    ("SELECT " + "1," * 10000 + "1", "too long"),
])
def test_refusals_say_why(sql, says):
    with pytest.raises(GuardError) as e:
        guard.check(sql)
    assert says in str(e.value)


def test_postgresql_lexing():
    # dollar quotes and E'' strings hide what is inside them; nested comments
    assert guard.check("SELECT $$; DELETE FROM t$$", "postgresql")
    assert guard.check("SELECT $x$ ; $x$ AS a", "postgresql")
    assert guard.check("SELECT E'it\\'s; fine'", "postgresql")
    assert guard.check("SELECT 1 /* a /* nested; */ comment */", "postgresql")
    assert guard.check("SELECT a[1] FROM t", "postgresql")
    for sql, says in [("SELECT pg_read_file('/etc/passwd')", "pg_read_file()"),
                      ("SELECT set_config('statement_timeout', '0', false)", "set_config()"),
                      ("SELECT nextval('s')", "nextval()"),
                      ("SELECT 1; COPY t TO '/tmp/x'", "only one statement"),
                      ("SELECT $$ unclosed", "never closed")]:
        with pytest.raises(GuardError) as e:
            guard.check(sql, "postgresql")
        assert says in str(e.value)


@pytest.fixture(scope="module")
def db(sample_path):
    return SqliteDatabase(sample_path, time_limit_s=2.0, max_rows=100)


def test_sqlite_refuses_writes_even_past_the_check(db, sample_path):
    # _run skips the statement check: the connection itself must refuse
    for sql in ["DELETE FROM orders", "UPDATE regions SET name = 'x'",
                "INSERT INTO regions VALUES (99, 'Nowhere')", "DROP TABLE orders",
                "CREATE TABLE t (x)", "ATTACH DATABASE ':memory:' AS other",
                "PRAGMA journal_mode = DELETE", "PRAGMA query_only = OFF"]:
        with pytest.raises(QueryError) as e:
            db._run(sql, 10, 1.0)
        assert "not authorized" in str(e.value) or "readonly" in str(e.value), (sql, e.value)
    assert db.run("SELECT COUNT(*) FROM orders").rows == [[15887]]
    assert db.run("SELECT COUNT(*) FROM regions").rows == [[5]]


def test_time_limit_stops_a_runaway_query(sample_path):
    slow = SqliteDatabase(sample_path, time_limit_s=0.3)
    started = time.monotonic()
    with pytest.raises(QueryError) as e:
        slow.run("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
                 "SELECT COUNT(*) FROM c")
    took = time.monotonic() - started
    assert "longer than the time limit (0.3 s)" in str(e.value)
    assert took < 2.0, took
    # a cross join that would take minutes, too
    with pytest.raises(QueryError):
        slow.run("SELECT COUNT(*) FROM orders a, orders b WHERE a.amount + b.amount > 1e9")
    # and the next query on the same database runs normally
    assert slow.run("SELECT 1").rows == [[1]]


def test_row_limit_cuts_and_says_so(db):
    result = db.run("SELECT order_id FROM orders ORDER BY order_id")
    assert len(result.rows) == 100 and result.truncated
    assert result.rows[-1] == [100]
    result = db.run("SELECT order_id FROM orders ORDER BY order_id LIMIT 100")
    assert len(result.rows) == 100 and not result.truncated
    assert len(db.run("SELECT order_id FROM orders", max_rows=5).rows) == 5


def test_database_errors_are_query_errors(db):
    with pytest.raises(QueryError) as e:
        db.run("SELECT nope FROM orders")
    assert str(e.value) == "no such column: nope"
    with pytest.raises(QueryError) as e:
        db.run("SELECT * FROM nowhere")
    assert str(e.value) == "no such table: nowhere"


def test_results_are_json_ready(db):
    result = db.run("SELECT 1.5 AS f, NULL AS n, x'00ff' AS b, 'é' AS t, "
                    "substr(hex(zeroblob(3000)), 1, 5000) AS long")
    f, n, b, t, long = result.rows[0]
    assert (f, n, b, t) == (1.5, None, "<2 bytes>", "é")
    assert len(long) == 2001 and long.endswith("…")
