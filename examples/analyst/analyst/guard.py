"""The statement check: a query the model wrote runs only if it is exactly
one SELECT (or WITH ... SELECT) statement that neither writes nor reaches
outside the database.

This is the first of the guard's layers, not the only one: the query then
runs on a read-only connection (SQLite's mode=ro with an authorizer that
allows nothing but reading, PostgreSQL's read-only transaction) under a
time limit and a row limit (db.py).  The check reads the SQL as a lexer
would, so that a keyword inside a string, a quoted name or a comment is not
mistaken for one in the statement (and a keyword smuggled into a comment
cannot hide a second statement): quotes '...' (with '' inside, and E'...'
with backslash escapes in PostgreSQL), "names", `names` and [names]
(SQLite), $tag$ ... $tag$ (PostgreSQL), -- and /* */ comments (nested in
PostgreSQL).
"""
import re


class GuardError(Exception):
    """The query is refused; the message says why, for the user and the model."""


MAX_SQL_CHARS = 20000

#  Words that make a statement write, lock, or reach outside the database;
#  refused anywhere outside quotes (a data-modifying WITH, SELECT INTO, ...)
FORBIDDEN = {"INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "INTO", "CREATE", "DROP", "ALTER",
             "TRUNCATE", "ATTACH", "DETACH", "PRAGMA", "VACUUM", "REINDEX", "GRANT", "REVOKE",
             "COPY", "CALL", "LOCK", "REPLACE"}
#  REPLACE is also a string function: allowed when a '(' follows
FUNCTION_WORDS = {"REPLACE"}
#  Functions with side effects or access to files, sessions or settings
FORBIDDEN_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",
                       "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file",
                       "lo_import", "lo_export", "lo_get", "lo_put", "lo_from_bytea", "lo_unlink",
                       "dblink", "dblink_exec", "dblink_connect", "set_config",
                       "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
                       "pg_rotate_logfile", "pg_logical_emit_message", "nextval", "setval",
                       "pg_advisory_lock", "pg_advisory_xact_lock", "query_to_xml",
                       "pg_notify"}

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def tokens(sql, dialect="sqlite"):
    """(kind, text, offset) for each token: kind is 'word', 'quoted' (a
    string or a quoted name), ';', 'punct' or 'other'.  Comments and
    whitespace are dropped.  GuardError for an unterminated quote or
    comment."""
    pg = dialect == "postgresql"
    out = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            depth, j = 1, i + 2
            while depth and j < n:
                if pg and sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise GuardError("the query has a comment that is never closed (/* without */)")
            i = j
        elif c == "'" or (pg and c in "eE" and sql.startswith("'", i + 1)):
            backslash = c != "'"
            j = i + (2 if backslash else 1)
            while True:
                if j >= n:
                    raise GuardError("the query has a string that is never closed (a ' is missing)")
                if backslash and sql[j] == "\\":
                    j += 2
                elif sql[j] == "'":
                    if sql.startswith("''", j):
                        j += 2
                    else:
                        j += 1
                        break
                else:
                    j += 1
            out.append(("quoted", sql[i:j], i))
            i = j
        elif c in "\"`[" and (c != "[" or not pg) and (c != "`" or not pg):
            close = {"\"": "\"", "`": "`", "[": "]"}[c]
            j = i + 1
            while True:
                if j >= n:
                    raise GuardError("the query has a quoted name that is never closed (%s)" % c)
                if sql[j] == close:
                    if close != "]" and sql.startswith(close * 2, j):
                        j += 2
                        continue
                    j += 1
                    break
                j += 1
            out.append(("quoted", sql[i:j], i))
            i = j
        elif pg and c == "$" and _DOLLAR.match(sql, i):
            tag = _DOLLAR.match(sql, i).group(0)
            end = sql.find(tag, i + len(tag))
            if end < 0:
                raise GuardError("the query has a %s-quoted string that is never closed" % tag)
            out.append(("quoted", sql[i:end + len(tag)], i))
            i = end + len(tag)
        elif c == ";":
            out.append((";", c, i))
            i += 1
        elif _WORD.match(sql, i):
            word = _WORD.match(sql, i).group(0)
            out.append(("word", word, i))
            i += len(word)
        elif c in "(),.":
            out.append(("punct", c, i))
            i += 1
        else:
            out.append(("other", c, i))
            i += 1
    return out


def check(sql, dialect="sqlite"):
    """The one statement of sql, ready to run (trailing ';' and what follows
    it removed), or GuardError."""
    if not isinstance(sql, str) or not sql.strip():
        raise GuardError("the query is empty")
    if len(sql) > MAX_SQL_CHARS:
        raise GuardError("the query is too long (%d characters, at most %d)"
                         % (len(sql), MAX_SQL_CHARS))
    toks = tokens(sql, dialect)
    statements, current = [], []
    for tok in toks:
        if tok[0] == ";":
            if current:
                statements.append(current)
            current = []
        else:
            current.append(tok)
    if current:
        statements.append(current)
    if not statements:
        raise GuardError("the query is empty (only comments)")
    if len(statements) > 1:
        raise GuardError("only one statement is allowed, the query has %d" % len(statements))
    stmt = statements[0]
    first = stmt[0][1].upper() if stmt[0][0] == "word" else stmt[0][1]
    if first not in ("SELECT", "WITH"):
        raise GuardError("only SELECT queries are allowed (one SELECT or WITH ... SELECT "
                         "statement); this one starts with %s" % first)
    for k, (kind, text, _) in enumerate(stmt):
        if kind != "word":
            continue
        upper = text.upper()
        follows = stmt[k + 1][1] if k + 1 < len(stmt) else ""
        if upper in FORBIDDEN and not (upper in FUNCTION_WORDS and follows == "("):
            raise GuardError("only reading queries are allowed: %s is refused" % upper)
        if text.lower() in FORBIDDEN_FUNCTIONS and follows == "(":
            raise GuardError("the function %s() is not allowed" % text.lower())
    last = stmt[-1]
    return sql[stmt[0][2]:last[2] + len(last[1])]
