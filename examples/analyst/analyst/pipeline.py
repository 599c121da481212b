"""A question's way from words to a table and a chart.

    ask(question)       the model writes SQL (run_sql), the guard checks it,
                        the database runs it; one repair round if the
                        database rejects it; then the chart is chosen
    run(sql)            the analyst's own (edited) SQL: no model involved
    summarise(q, sql)   runs the SQL again and, now that the analyst asked,
                        sends the result to the model for a few sentences

Thread-safe: the web server calls these from one thread per connection.
Every answer is a plain dict, ready for JSON.
"""
import contextlib
import json
import os
import threading
import time

from . import chart
from . import prompt
from .db import QueryError
from .guard import GuardError
from .llm import LLMError

REPAIR_ROUNDS = 1
#  SQLite queries (which run in this process) run at most this many at a
#  time, the others wait their turn in order (threading.Condition wakes
#  waiters first come, first served): under a flood of questions, a question
#  waits for the ones before it instead of every thread fighting for the CPU
#  and the GIL and the unlucky ones waiting seconds.  PostgreSQL's run on
#  the server: no gate.
_sqlite_queries = threading.Semaphore(2 * max(2, os.cpu_count() or 2))


class Analyst:
    def __init__(self, db, client, today, context="", temperature=0.0):
        self.db = db
        self.client = client
        self.today = today
        self.context = context
        self.temperature = temperature

    def info(self):
        return {"database": self.db.name, "dialect": self.db.dialect, "model": self.client.model,
                "today": self.today,
                "tables": [{"name": t.name, "rows": t.row_count,
                            "columns": [c.name for c in t.columns]} for t in self.db.schema()]}

    def _result(self, sql):
        """Runs sql: the answer's result part, or raises GuardError / QueryError."""
        with _sqlite_queries if self.db.dialect == "sqlite" else contextlib.nullcontext():
            result = self.db.run(sql)
        answer = result.as_json()
        answer["chart"] = chart.choose(result.columns, result.rows)
        return answer

    def run(self, sql):
        answer = {"sql": sql}
        try:
            answer.update(self._result(sql))
        except (GuardError, QueryError) as e:
            answer["error"] = str(e)
        return answer

    def ask(self, question):
        """{question, sql, columns, rows, truncated, chart, attempts,
        generation_ms, query_ms} or, when no query could run, with "error"
        (or "message": the model's words instead of a query)."""
        question = question.strip()
        messages = prompt.question_messages(self.db, question, self.today, self.context)
        answer = {"question": question, "sql": None, "attempts": [], "generation_ms": 0.0}
        for round_ in range(REPAIR_ROUNDS + 1):
            started = time.monotonic()
            try:
                completion = self.client.chat(messages, tools=[prompt.RUN_SQL],
                                              tool_choice="auto", temperature=self.temperature)
            except LLMError as e:
                answer["error"] = str(e)
                answer["upstream_status"] = e.status
                return answer
            finally:
                answer["generation_ms"] += (time.monotonic() - started) * 1000
            message = completion["choices"][0].get("message") or {}
            call = _run_sql_call(message)
            if call is None:
                text = (message.get("content") or "").strip()
                answer["message"] = text or "The model answered without a query."
                if round_ == 0:
                    answer["error"] = "the model did not write a query"
                return answer
            sql, error = _arguments(call)
            if sql is not None:
                answer["sql"] = sql
                try:
                    answer.update(self._result(sql))
                    answer["attempts"].append({"sql": sql, "error": None})
                    answer.pop("error", None)
                    answer["generation_ms"] = round(answer["generation_ms"], 1)
                    return answer
                except (GuardError, QueryError) as e:
                    error = str(e)
            answer["attempts"].append({"sql": sql, "error": error})
            answer["error"] = error
            if round_ < REPAIR_ROUNDS:
                messages = messages + prompt.repair_messages(message, call.get("id") or "call_0",
                                                             error)
        answer["generation_ms"] = round(answer["generation_ms"], 1)
        return answer

    def summarise(self, question, sql):
        try:
            result = self.db.run(sql)
        except (GuardError, QueryError) as e:
            return {"error": str(e)}
        messages = prompt.summary_messages(question, sql, result.columns, result.rows,
                                           result.truncated)
        started = time.monotonic()
        try:
            completion = self.client.chat(messages, tools=[prompt.RUN_SQL], tool_choice="none",
                                          temperature=self.temperature)
        except LLMError as e:
            return {"error": str(e), "upstream_status": e.status}
        message = completion["choices"][0].get("message") or {}
        return {"summary": (message.get("content") or "").strip(),
                "generation_ms": round((time.monotonic() - started) * 1000, 1)}


def _run_sql_call(message):
    for call in message.get("tool_calls") or []:
        if (call.get("function") or {}).get("name") == "run_sql":
            return call
    return None


def _arguments(call):
    """(sql, None) or (None, why the arguments are unusable)."""
    raw = (call.get("function") or {}).get("arguments")
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return None, "the run_sql arguments are not JSON; send {\"sql\": \"SELECT ...\"}"
    if not isinstance(args, dict) or not isinstance(args.get("sql"), str) or \
            not args["sql"].strip():
        return None, "run_sql needs a \"sql\" argument holding one SELECT statement"
    return args["sql"].strip(), None
