"""The databases a question can be asked of, and how a query runs on them.

    open_database("sample.db" | "postgresql://..." | "dbname=... host=...")

Every query the model (or the user, after editing) wrote runs through
Database.run: the statement check (guard.py), then a read-only connection,
a time limit and a row limit.

  SQLite      connections on file:<path>?mode=ro (kept in a pool, one per
              query at a time), with PRAGMA query_only, an authorizer that
              allows reading and nothing else (no ATTACH, PRAGMA or write
              even if the check missed one) and a progress handler that
              interrupts the query at the time limit.
  PostgreSQL  a pool of connections in read-only sessions; each query in its
              own transaction with SET LOCAL statement_timeout, rolled back
              at the end, read through a server-side cursor (DECLARE ...
              CURSOR takes only a query, and only max_rows + 1 rows ever
              reach the application); a watchdog cancels the query if the
              server-side timeout was defeated.  Give the application a
              role that may only SELECT.

Results are JSON-ready: numbers stay numbers (Decimal becomes float),
dates become ISO strings, bytes are described, long texts cut.
"""
import datetime
import decimal
import os
import sqlite3
import threading
import time
import urllib.parse

from . import guard

MAX_CELL_CHARS = 2000


class QueryError(Exception):
    """The database refused or stopped the query; the message says why."""


class Result:
    def __init__(self, columns, rows, truncated, elapsed_ms):
        self.columns = columns
        self.rows = rows
        self.truncated = truncated
        self.elapsed_ms = elapsed_ms

    def as_json(self):
        return {"columns": self.columns, "rows": self.rows, "truncated": self.truncated,
                "query_ms": round(self.elapsed_ms, 1)}


def _cell(value):
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2 ** 53 \
            else float(value)
    if isinstance(value, (datetime.date, datetime.datetime, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "<%d bytes>" % len(bytes(value))
    text = str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS] + "…"


class Table:
    def __init__(self, name, columns, foreign_keys, row_count):
        self.name = name
        self.columns = columns              # [Column]
        self.foreign_keys = foreign_keys    # [(column, other_table, other_column)]
        self.row_count = row_count


class Column:
    def __init__(self, name, type_, primary_key=False, not_null=False):
        self.name = name
        self.type = type_
        self.primary_key = primary_key
        self.not_null = not_null
        self.values = []            # a few distinct values, or all when few
        self.distinct_all = False   # values holds every distinct value
        self.range = None           # (min, max) of numbers and dates


class Database:
    dialect = "sqlite"
    name = ""

    def __init__(self, time_limit_s=5.0, max_rows=1000):
        self.time_limit_s = time_limit_s
        self.max_rows = max_rows
        self._schema = None
        self._schema_lock = threading.Lock()

    def run(self, sql, max_rows=None, time_limit_s=None):
        """Checks and runs one query: a Result, or GuardError / QueryError."""
        statement = guard.check(sql, self.dialect)
        started = time.monotonic()
        columns, rows, truncated = self._run(statement, max_rows or self.max_rows,
                                             time_limit_s or self.time_limit_s)
        elapsed = (time.monotonic() - started) * 1000
        return Result(columns, [[_cell(v) for v in row] for row in rows], truncated, elapsed)

    def schema(self):
        """Tables, columns, keys and a few values of each column (computed once)."""
        with self._schema_lock:
            if self._schema is None:
                self._schema = self._introspect()
            return self._schema

    def close(self):
        pass


# --- SQLite ------------------------------------------------------------------

#  What the authorizer lets a query do: read, and call functions
_SQLITE_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                   getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
_SQLITE_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}


def _authorizer(action, arg1, arg2, db_name, trigger):
    if action not in _SQLITE_ALLOWED:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _SQLITE_DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path, pool_size=64, **limits):
        super().__init__(**limits)
        self.path = os.path.abspath(path)
        if not os.path.exists(self.path):
            raise QueryError("no database at %s" % self.path)
        self.name = os.path.basename(self.path)
        self.uri = "file:%s?mode=ro" % urllib.parse.quote(self.path)
        self.pool_size = pool_size
        self._idle = []
        self._lock = threading.Lock()

    def _connect(self):
        conn = sqlite3.connect(self.uri, uri=True, check_same_thread=False,
                               isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _guarded(self):
        """A connection with the authorizer on, from the pool or new."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = self._connect()
        conn.set_authorizer(_authorizer)
        return conn

    def _release(self, conn):
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _run(self, statement, max_rows, time_limit_s):
        conn = self._guarded()
        deadline = time.monotonic() + time_limit_s
        #  Every 100,000 virtual machine steps (about a millisecond): often
        #  enough for the limit, rarely enough not to fight other threads
        #  for the GIL while SQLite runs without it
        conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 100000)
        cur = None
        try:
            cur = conn.execute(statement)
            columns = [d[0] for d in cur.description or []]
            rows = cur.fetchmany(max_rows + 1)
            return columns, rows[:max_rows], len(rows) > max_rows
        except sqlite3.Error as e:
            message = str(e)
            if message == "interrupted" or time.monotonic() > deadline:
                raise QueryError("the query ran longer than the time limit (%g s) and was "
                                 "stopped" % time_limit_s) from None
            if message == "not authorized":
                raise QueryError("not authorized: only reading queries are allowed") from None
            raise QueryError(message) from None
        finally:
            if cur is not None:
                cur.close()                 # ends the statement: no read lock kept
            conn.set_progress_handler(None, 0)
            self._release(conn)

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _introspect(self):
        conn = self._connect()
        try:
            tables = []
            names = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
            for name in names:
                q = _quote(name)
                columns = [Column(r[1], r[2] or "", bool(r[5]), bool(r[3]))
                           for r in conn.execute("PRAGMA table_info(%s)" % q)]
                fks = [(r[3], r[2], r[4]) for r in conn.execute("PRAGMA foreign_key_list(%s)" % q)]
                count = conn.execute("SELECT COUNT(*) FROM %s" % q).fetchone()[0]
                table = Table(name, columns, fks, count)
                for column in columns:
                    _sample_column(lambda sql: conn.execute(sql).fetchall(), q, column)
                tables.append(table)
            return tables
        finally:
            conn.close()


def _quote(name):
    return '"%s"' % name.replace('"', '""')


def _sample_column(query, table_sql, column):
    """Fills column.values and column.range from a few cheap queries."""
    c = _quote(column.name)
    try:
        values = [r[0] for r in query("SELECT DISTINCT %s FROM %s WHERE %s IS NOT NULL LIMIT 13"
                                      % (c, table_sql, c))]
        column.distinct_all = len(values) <= 12
        column.values = [_cell(v) for v in values[:12 if column.distinct_all else 3]]
        if values and all(isinstance(v, (int, float, decimal.Decimal, datetime.date)) and
                          not isinstance(v, bool) or
                          (isinstance(v, str) and _looks_like_date(v)) for v in values):
            lo, hi = query("SELECT MIN(%s), MAX(%s) FROM %s" % (c, c, table_sql))[0]
            column.range = (_cell(lo), _cell(hi))
    except Exception:       # a type the driver cannot read, a slow table: fewer samples
        pass


def _looks_like_date(text):
    return len(text) >= 10 and text[4] == "-" and text[7] == "-" and text[:4].isdigit()


# --- PostgreSQL --------------------------------------------------------------

class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, dsn, pool_size=32, **limits):
        super().__init__(**limits)
        import psycopg2                     # Debian's python3-psycopg2
        import psycopg2.extensions
        self.psycopg2 = psycopg2
        self.dsn = dsn
        self.pool_size = pool_size
        self._idle = []
        self._lock = threading.Lock()
        conn = self._connect()              # fails now, not at the first question
        self.name = "%s (PostgreSQL)" % conn.get_dsn_parameters().get("dbname", "")
        self._release(conn)

    def _connect(self):
        try:
            conn = self.psycopg2.connect(self.dsn, application_name="seekmesh-analyst")
        except self.psycopg2.Error as e:
            raise QueryError("cannot connect to PostgreSQL: %s" % str(e).strip()) from None
        conn.set_session(readonly=True, autocommit=False)
        return conn

    def _acquire(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._connect()

    def _release(self, conn, broken=False):
        if broken or conn.closed:
            conn.close()
            return
        with self._lock:
            if len(self._idle) < self.pool_size:
                self._idle.append(conn)
                return
        conn.close()

    def _run(self, statement, max_rows, time_limit_s):
        conn = self._acquire()
        broken = False
        watchdog = threading.Timer(time_limit_s + 1.0, conn.cancel)
        try:
            with conn.cursor() as setup:
                setup.execute("SET LOCAL statement_timeout = %d" % int(time_limit_s * 1000))
            cur = conn.cursor(name="analyst_query")     # server-side: rows come as fetched
            cur.itersize = max_rows + 1
            watchdog.start()
            cur.execute(statement)
            rows = cur.fetchmany(max_rows + 1)
            columns = [d[0] for d in cur.description or []]
            cur.close()
            return columns, rows[:max_rows], len(rows) > max_rows
        except self.psycopg2.Error as e:
            broken = isinstance(e, (self.psycopg2.OperationalError, self.psycopg2.InterfaceError)) \
                and conn.closed
            code = getattr(e, "pgcode", None)
            if code == "57014":             # query_canceled: the timeout or the watchdog
                raise QueryError("the query ran longer than the time limit (%g s) and was "
                                 "stopped" % time_limit_s) from None
            message = (getattr(e, "pgerror", None) or str(e)).strip()
            raise QueryError(message.replace("ERROR:  ", "", 1)) from None
        finally:
            watchdog.cancel()
            if not conn.closed:
                try:
                    conn.rollback()
                except self.psycopg2.Error:
                    broken = True
            self._release(conn, broken)

    def _introspect(self):
        conn = self._acquire()
        try:
            with conn.cursor() as cur:
                cur.execute("SET LOCAL statement_timeout = 10000")
                cur.execute("""
                    SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable
                    FROM information_schema.columns c
                    JOIN information_schema.tables t
                      ON t.table_schema = c.table_schema AND t.table_name = c.table_name
                    WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema')
                    ORDER BY c.table_schema, c.table_name, c.ordinal_position""")
                columns = cur.fetchall()
                #  pg_catalog, not information_schema: the latter hides the
                #  keys of tables a role may only read
                cur.execute("""
                    SELECT n.nspname, c.relname, a.attname,
                           CASE con.contype WHEN 'p' THEN 'PRIMARY KEY' ELSE 'FOREIGN KEY' END,
                           fn.nspname, fc.relname, fa.attname
                    FROM pg_constraint con
                    JOIN pg_class c ON c.oid = con.conrelid
                    JOIN pg_namespace n ON n.oid = c.relnamespace
                    JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) ON true
                    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                    LEFT JOIN pg_class fc ON fc.oid = con.confrelid
                    LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
                    LEFT JOIN pg_attribute fa
                      ON fa.attrelid = con.confrelid AND fa.attnum = con.confkey[k.ord]
                    WHERE con.contype IN ('p', 'f')
                      AND n.nspname NOT IN ('pg_catalog', 'information_schema')""")
                keys = cur.fetchall()
                cur.execute("""
                    SELECT n.nspname, c.relname, GREATEST(c.reltuples, 0)::bigint
                    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind IN ('r', 'v', 'm', 'p')""")
                counts = {(r[0], r[1]): r[2] for r in cur.fetchall()}
            tables = {}
            for schema, table, column, type_, nullable in columns:
                name = table if schema == "public" else "%s.%s" % (schema, table)
                t = tables.setdefault((schema, table), Table(name, [], [], counts.get(
                    (schema, table), 0)))
                t.columns.append(Column(column, type_, False, nullable == "NO"))
            for schema, table, column, kind, fschema, ftable, fcolumn in keys:
                t = tables.get((schema, table))
                if not t:
                    continue
                if kind == "PRIMARY KEY":
                    for c in t.columns:
                        c.primary_key = c.primary_key or c.name == column
                elif ftable:
                    other = ftable if fschema == "public" else "%s.%s" % (fschema, ftable)
                    t.foreign_keys.append((column, other, fcolumn))
            conn.rollback()
            for (schema, table), t in tables.items():
                table_sql = "%s.%s" % (_quote(schema), _quote(table))
                for column in t.columns:
                    def query(sql):
                        with conn.cursor() as cur:
                            cur.execute("SET LOCAL statement_timeout = 2000")
                            cur.execute(sql)
                            return cur.fetchall()
                    try:
                        _sample_column(query, table_sql, column)
                    finally:
                        conn.rollback()
            return [tables[k] for k in sorted(tables)]
        finally:
            self._release(conn)

    def close(self):
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def open_database(target, **limits):
    """A SQLite file path, or a PostgreSQL DSN (postgresql://... or key=value)."""
    if target.startswith(("postgresql://", "postgres://")) or \
            ("=" in target and not os.path.exists(target)):
        return PostgresDatabase(target, **limits)
    return SqliteDatabase(target, **limits)
