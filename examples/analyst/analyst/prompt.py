"""What the model is told: the prompt engineering, in one place.

The conversation for a question is

    system     the rules, the SQL dialect's notes, today's date, the schema
               (summarised when large), the database's context (glossary and
               worked examples: the few-shot part) and the run_sql tool's use
    user       the question, exactly as the analyst typed it

and the model answers with a call of run_sql(sql).  If the database rejects
the query, one repair round follows: the assistant's call and a tool message
with the database's error go back, and the model calls run_sql again.  The
rows are never sent, except when the analyst asks for a summary (then a
second, separate conversation carries the result).

The schema is written as CREATE TABLE statements (what models have read
most of), each column with its type, keys and references, and a comment
with what the data holds: every value of a column with few distinct values
(so the model writes status = 'completed', not 'complete'), the range of
numbers and dates (so it knows the data ends in 2024), a few examples
otherwise.  A schema larger than SCHEMA_BUDGET_CHARS is summarised: the
tables that the question names (by table, column or value) and the tables
they reference are written in full, the others by name and columns only,
and past that by name only.
"""
import json
import re

SCHEMA_BUDGET_CHARS = 12000

RUN_SQL = {
    "type": "function",
    "function": {
        "name": "run_sql",
        "description": "Run one read-only SQL query on the analyst's database. The application "
                       "shows the SQL, the result table and a chart to the analyst; you do not "
                       "see the rows.",
        "parameters": {
            "type": "object",
            "properties": {
                "sql": {"type": "string",
                        "description": "Exactly one SELECT (or WITH ... SELECT) statement."},
            },
            "required": ["sql"],
        },
    },
}

DIALECT_NOTES = {
    "sqlite": """SQL dialect: SQLite 3.
- Dates are TEXT 'YYYY-MM-DD'. Year: strftime('%Y', d). Month: strftime('%Y-%m', d).
  Quarter: strftime('%Y', d) || '-Q' || ((CAST(strftime('%m', d) AS INTEGER) + 2) / 3).
  Compare dates as strings: d >= '2024-01-01' AND d < '2025-01-01'.
- Do not use date('now'): the current date is given below.
- Integer division truncates: write 100.0 * a / b for percentages.
- ROUND(x, 2) for money and ratios. LIKE is case-insensitive for ASCII.""",
    "postgresql": """SQL dialect: PostgreSQL.
- Year: EXTRACT(YEAR FROM d)::int. Month: to_char(d, 'YYYY-MM'). Quarter: to_char(d, 'YYYY-"Q"Q').
  date_trunc('month', d) for time buckets that stay dates.
- Do not use now() or current_date: the current date is given below.
- Integer division truncates: write 100.0 * a / b for percentages.
- ROUND(x::numeric, 2) for money and ratios. ILIKE for case-insensitive matching.""",
}

SYSTEM = """You are a data analyst. You answer questions about a {dialect_name} database by \
writing one SQL query and calling the run_sql tool with it.

Rules:
- Write exactly one read-only SELECT statement (WITH ... SELECT is fine). Never write to the \
database.
- Use only the tables and columns listed below. Use table aliases when you join.
- Return what the question asks for and nothing more: the label or time column first, then the \
numbers, with short readable column aliases (month, region, revenue, orders).
- For a trend over time, return one row per period, ordered by period.
- For "top N" or "bottom N", ORDER BY the measure and LIMIT N. Otherwise do not add LIMIT.
- Round money and ratios to 2 decimals.
- Today is {today}. Relative periods ("last quarter", "this year", "last month") are relative \
to today; "last quarter" is the last complete calendar quarter before today.
- If the database reports an error, correct the query and call run_sql again.
- If the question cannot be answered from these tables, say so in one sentence instead of \
calling the tool.

{dialect_notes}

The database:

{schema}
{context}"""

SUMMARY_SYSTEM = """You are a data analyst. The analyst asked a question, a SQL query answered \
it, and the tool message holds the result as CSV. Summarise what the result says about the \
question in two to four sentences, with the numbers that matter. Use only the result; if it is \
cut short, say that the summary covers the rows shown."""


def _comment(column):
    if column.distinct_all and column.values and not column.primary_key:
        if column.range and not isinstance(column.values[0], str):
            return "%s .. %s" % column.range
        return "one of " + ", ".join(_literal(v) for v in column.values)
    if column.range:
        return "%s .. %s" % column.range
    if column.values:
        return "e.g. " + ", ".join(_literal(v) for v in column.values)
    return ""


def _literal(value):
    if isinstance(value, str):
        return "'%s'" % value.replace("'", "''")
    return str(value)


def table_ddl(table, detail="full"):
    """CREATE TABLE text; detail 'full' (comments with values), 'columns'."""
    refs = {fk[0]: fk for fk in table.foreign_keys}
    lines = []
    for column in table.columns:
        line = "  %s %s" % (column.name, column.type or "")
        if column.primary_key:
            line += " PRIMARY KEY"
        if column.name in refs:
            line += " REFERENCES %s(%s)" % (refs[column.name][1], refs[column.name][2])
        comment = _comment(column) if detail == "full" else ""
        lines.append((line.rstrip(), comment))
    body = []
    for i, (line, comment) in enumerate(lines):
        sep = "," if i < len(lines) - 1 else ""
        body.append(line + sep + ("  -- " + comment if comment else ""))
    count = "  -- %s rows" % format(table.row_count, ",") if table.row_count is not None else ""
    return "CREATE TABLE %s (%s\n%s\n);" % (table.name, count, "\n".join(body))


def _words(text):
    words = set()
    for w in re.findall(r"[a-z0-9]+", text.lower()):
        words.add(w)
        if len(w) > 3 and w.endswith("s"):
            words.add(w[:-1])
    return words


def _relevance(table, question_words):
    score = 0
    if _words(table.name.replace("_", " ")) & question_words:
        score += 10
    for column in table.columns:
        if _words(column.name.replace("_", " ")) & question_words:
            score += 3
        for value in column.values:
            if isinstance(value, str) and _words(value) & question_words:
                score += 2
    return score


def schema_text(tables, question="", budget=SCHEMA_BUDGET_CHARS):
    """The schema as the prompt gives it: in full when it fits the budget,
    else summarised around the tables the question is about."""
    full = [table_ddl(t) for t in tables]
    if sum(len(t) + 2 for t in full) <= budget:
        return "\n\n".join(full)
    words = _words(question)
    by_name = {t.name: t for t in tables}
    ranked = sorted(tables, key=lambda t: (-_relevance(t, words), t.name))
    chosen = []
    for t in ranked:
        if _relevance(t, words) == 0:
            break
        for name in [t.name] + [fk[1] for fk in t.foreign_keys]:
            if name in by_name and by_name[name] not in chosen:
                chosen.append(by_name[name])
    parts, used, rest = [], 0, []
    for t in chosen:
        text = table_ddl(t)
        if used + len(text) > budget * 0.75:
            rest.append(t)
            continue
        parts.append(text)
        used += len(text) + 2
    rest += [t for t in tables if t not in chosen]
    short, names, unnamed = [], [], 0
    for t in rest:
        text = "%s(%s)" % (t.name, ", ".join(c.name for c in t.columns))
        if used + len(text) <= budget * 0.9:
            short.append(text)
            used += len(text) + 1
        elif used + len(t.name) <= budget:
            names.append(t.name)
            used += len(t.name) + 2
        else:
            unnamed += 1
    if short:
        parts.append("-- Other tables, columns only:\n" + "\n".join(short))
    if names:
        parts.append("-- More tables (ask about them by name): " + ", ".join(names) +
                     (" and %d more" % unnamed if unnamed else ""))
    return "\n\n".join(parts)


_cache = {}


def system_message(db, today, context="", question=""):
    """The system prompt; the same text for every question while the schema
    fits whole (kept, so a busy server builds it once)."""
    key = (id(db), today, context)
    cached = _cache.get(key)
    if cached and cached[0] is db:
        return cached[1]
    dialect_name = "SQLite" if db.dialect == "sqlite" else "PostgreSQL"
    tables = db.schema()
    text = SYSTEM.format(dialect_name=dialect_name, today=today,
                         dialect_notes=DIALECT_NOTES[db.dialect],
                         schema=schema_text(tables, question),
                         context=("\n" + context.strip() + "\n") if context.strip() else "")
    if sum(len(table_ddl(t)) + 2 for t in tables) <= SCHEMA_BUDGET_CHARS:
        if len(_cache) > 16:
            _cache.clear()
        _cache[key] = (db, text)
    return text


def question_messages(db, question, today, context=""):
    return [{"role": "system", "content": system_message(db, today, context, question)},
            {"role": "user", "content": question}]


def repair_messages(assistant_message, call_id, error):
    """What goes back after the database refused the query: the model's own
    call, then the error as the tool's answer."""
    call = {k: assistant_message[k] for k in ("role", "content", "tool_calls")
            if k in assistant_message}
    call["role"] = "assistant"
    call.setdefault("content", None)
    return [call, {"role": "tool", "tool_call_id": call_id,
                   "content": "ERROR: %s\nThe query failed. Correct it and call run_sql again."
                              % error}]


def result_csv(columns, rows, limit=200):
    """The result as CSV text for the summary (at most limit rows)."""
    import csv
    import io
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows[:limit]:
        writer.writerow(row)
    if len(rows) > limit:
        out.write("(%d more rows not shown)\n" % (len(rows) - limit))
    return out.getvalue()


def summary_messages(question, sql, columns, rows, truncated):
    call = {"id": "call_result", "type": "function",
            "function": {"name": "run_sql", "arguments": json.dumps({"sql": sql})}}
    text = result_csv(columns, rows)
    if truncated:
        text += "(the result was cut at the row limit)\n"
    return [{"role": "system", "content": SUMMARY_SYSTEM},
            {"role": "user", "content": question},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_result", "content": text}]
