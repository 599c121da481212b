"""A question's way through the pipeline, against the real seekmesh-mock
replaying recorded model answers: the repair round (the first query is
broken, the database's error goes back, the model's second query runs),
its limit of one, the model answering in words, unusable arguments, the
summary, and the client's retries."""
import json

import pytest

from analyst import prompt
from analyst.db import SqliteDatabase
from analyst.llm import ChatClient
from analyst.pipeline import Analyst

from analyst_fixtures import Mock


def call(sql):
    return {"name": "run_sql", "arguments": {"sql": sql} if isinstance(sql, str) else sql}


RECORDINGS = [
    # the repair round: a misspelt table, then the right one
    {"prompt": "How many regions are there?", "tool_call": call("SELECT COUNT(*) FROM regionz")},
    {"prompt": "How many regions are there?", "after_tool": "no such table: regionz",
     "tool_call": call("SELECT COUNT(*) AS regions FROM regions")},
    {"prompt": "How many regions are there?", "after_tool": "",
     "content": "There are 5 regions."},
    # a repair that fails too: no third try
    {"prompt": "Total revenue?", "tool_call": call("SELECT SUM(total) FROM orders")},
    {"prompt": "Total revenue?", "after_tool": "no such column: total",
     "tool_call": call("SELECT SUM(price) FROM orders")},
    {"prompt": "Total revenue?", "after_tool": "no such column: price",
     "tool_call": call("SELECT SUM(amount) FROM orders")},
    # a write is refused by the guard; the refusal goes back like an error
    {"prompt": "Tidy up the regions", "tool_call": call("DELETE FROM regions")},
    {"prompt": "Tidy up the regions", "after_tool": "starts with DELETE",
     "tool_call": call("SELECT name FROM regions ORDER BY name")},
    # arguments that are not JSON, then good ones
    {"prompt": "Name the products", "tool_call": {"name": "run_sql", "arguments": "{not json"}},
    {"prompt": "Name the products", "after_tool": "not JSON",
     "tool_call": call("SELECT name FROM products ORDER BY product_id LIMIT 3")},
    # the model answers in words
    {"prompt": "What is the weather?", "content": "I can only answer questions about sales."},
]


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    m = Mock(tmp_path_factory.mktemp("mock"), RECORDINGS)
    yield m
    m.stop()


@pytest.fixture(scope="module")
def analyst(mock, sample_path):
    client = ChatClient(mock.base_url, "sk-any", "deepseek-chat", timeout_s=10)
    return Analyst(SqliteDatabase(sample_path), client, "2025-01-01")


def test_repair_round_sends_the_error_and_runs_the_second_query(mock, analyst):
    before = mock.requests()
    answer = analyst.ask("How many regions are there?")
    assert mock.requests() - before == 2
    assert answer.get("error") is None
    assert answer["attempts"] == [
        {"sql": "SELECT COUNT(*) FROM regionz", "error": "no such table: regionz"},
        {"sql": "SELECT COUNT(*) AS regions FROM regions", "error": None}]
    # the mock gives the second query only to a conversation whose tool
    # message holds the database's error: so the error went back
    assert answer["sql"] == "SELECT COUNT(*) AS regions FROM regions"
    assert answer["columns"] == ["regions"] and answer["rows"] == [[5]]
    assert answer["generation_ms"] > 0


def test_one_repair_round_only(mock, analyst):
    before = mock.requests()
    answer = analyst.ask("Total revenue?")
    assert mock.requests() - before == 2            # the third recording is never asked for
    assert answer["error"] == "no such column: price"
    assert [a["error"] for a in answer["attempts"]] == ["no such column: total",
                                                        "no such column: price"]
    assert "rows" not in answer


def test_guard_refusal_goes_back_to_the_model(analyst, sample_path):
    answer = analyst.ask("Tidy up the regions")
    assert "starts with DELETE" in answer["attempts"][0]["error"]
    assert answer["rows"] == [["Central"], ["East"], ["North"], ["South"], ["West"]]
    assert SqliteDatabase(sample_path).run("SELECT COUNT(*) FROM regions").rows == [[5]]


def test_unusable_arguments_go_back_to_the_model(analyst):
    answer = analyst.ask("Name the products")
    assert "not JSON" in answer["attempts"][0]["error"] and answer["attempts"][0]["sql"] is None
    assert answer["rows"] == [["Laptop Pro 14"], ["Laptop Air 13"], ["Wireless Mouse"]]


def test_words_instead_of_a_query(analyst):
    answer = analyst.ask("What is the weather?")
    assert answer["message"] == "I can only answer questions about sales."
    assert answer["error"] == "the model did not write a query" and answer["attempts"] == []


def test_summary_sends_the_result(analyst):
    answer = analyst.summarise("How many regions are there?", "SELECT COUNT(*) FROM regions")
    assert answer["summary"] == "There are 5 regions."
    # the rows travel as CSV in the tool message, after the model's own call
    messages = prompt.summary_messages("q", "SELECT 1", ["a", "b"], [[1, "x,y"]], True)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert messages[3]["content"] == 'a,b\n1,"x,y"\n(the result was cut at the row limit)\n'
    assert json.loads(messages[2]["tool_calls"][0]["function"]["arguments"]) == {"sql": "SELECT 1"}
    assert analyst.summarise("q", "DELETE FROM orders")["error"].startswith("only SELECT")


def test_question_prompt_has_schema_dialect_and_no_rows(analyst):
    messages = prompt.question_messages(analyst.db, "How many regions?", "2025-01-01",
                                        "Revenue means SUM(amount).")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"] == "How many regions?"
    system = messages[0]["content"]
    assert "SQL dialect: SQLite 3." in system and "Today is 2025-01-01." in system
    assert "CREATE TABLE orders (  -- 15,887 rows" in system
    assert "customer_id INTEGER REFERENCES customers(customer_id)," in system
    assert "status TEXT,  -- one of 'cancelled', 'completed', 'returned'" in system
    assert "order_date DATE,  -- 2021-01-01 .. 2024-12-31" in system
    assert "Revenue means SUM(amount)." in system


def test_large_schemas_are_summarised_around_the_question():
    from analyst.db import Column, Table
    tables = []
    for i in range(120):
        columns = [Column("id", "INTEGER", True)] + [Column("field_%d" % k, "TEXT")
                                                     for k in range(8)]
        tables.append(Table("table_%03d" % i, columns, [], 10))
    tables[7].name = "invoices"
    tables[7].foreign_keys = [("field_1", "table_050", "id")]
    tables[7].columns[2].values, tables[7].columns[2].distinct_all = ["paid", "open"], True
    text = prompt.schema_text(tables, "Which invoices are still open?", budget=3000)
    assert len(text) <= 3000 + 500
    assert text.startswith("CREATE TABLE invoices (")
    assert "field_1 TEXT REFERENCES table_050(id)" in text
    assert "CREATE TABLE table_050 (" in text            # what it references, in full
    assert "table_001(id, field_0" in text              # others by their columns
    assert "More tables (ask about them by name): table_" in text
    # every table is there, in full, by its columns, by name or counted
    full = text.count("CREATE TABLE ")
    by_columns = text.count("(id, field_0")
    named = len(text.split("by name): ")[1].split(" and ")[0].split(", "))
    unnamed = int(text.rsplit(" and ", 1)[1].split()[0])
    assert (full, full + by_columns + named + unnamed) == (2, 120)
    # a small schema is given whole, whatever the question
    assert prompt.schema_text(tables[:3], "anything").count("CREATE TABLE") == 3


def test_client_retries_like_the_sdks(mock, analyst):
    assert mock.admin("PUT", "/mock/fault", {"status": 503, "count": 2})[0] == 200
    answer = analyst.ask("How many regions are there?")
    assert answer["rows"] == [[5]]                     # two 503s, then the answers
    assert mock.admin("PUT", "/mock/fault", {"status": 503, "count": 3})[0] == 200
    answer = analyst.ask("How many regions are there?")
    assert answer["upstream_status"] == 503
    assert answer["error"].startswith("the model gateway answered 503: Server overloaded")
    assert mock.admin("PUT", "/mock/fault", {"status": 400, "count": 1})[0] == 200
    assert analyst.ask("How many regions are there?")["upstream_status"] == 400   # not retried
    assert analyst.ask("How many regions are there?")["rows"] == [[5]]
