"""examples/analyst through a real mesh: the evaluation on the mock's
recorded answers (compose/config/local.json loads them), the web
application in a real headless Chromium, and the application's answers
to bad requests and a failing gateway.

The application runs as its own process (`analyst serve`, `analyst eval`,
`analyst ask`), pointed at the mesh's ingress like any client; it does not
know the upstream is the mock.
"""
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meshlib import BIN, REPO

ANALYST = REPO / "examples" / "analyst" / "bin" / "analyst"
QUESTIONS = json.loads((REPO / "examples/analyst/eval/questions.json").read_text())["questions"]
#  What the recorded answers are: three wrong queries (q22 forgets the
#  status, q36 divides by the wrong year, q58 counts every status) and one
#  repair that fails (q52); three repairs that work
WRONG = {"q22", "q36", "q58", "q52"}
REPAIRED = {"q26", "q41", "q60"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def analyst(*args, timeout=120):
    return subprocess.run([sys.executable, str(ANALYST), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def base_url(mesh):
    return "http://%s:%d/v1" % (mesh.host, mesh.port)


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("analyst") / "sales.db"
    made = analyst("sample", str(path))
    assert made.returncode == 0, made.stderr
    return path


class App:
    def __init__(self, tmp, mesh, db):
        self.port = free_port()
        self.log_path = Path(tmp) / "analyst.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(ANALYST), "serve", "--listen", "127.0.0.1:%d" % self.port,
                 "--db", str(db), "--base-url", base_url(mesh)], stderr=log, cwd=REPO)
        deadline = time.time() + 10
        while True:
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                pass
            assert self.proc.poll() is None, self.log_path.read_text()
            assert time.time() < deadline, "analyst serve did not start"
            time.sleep(0.05)

    @property
    def url(self):
        return "http://127.0.0.1:%d/" % self.port

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            conn.request(method, path, body=data, headers=headers or {})
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode(errors="replace")

    def get(self, path):
        return self.request("GET", path)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def app(tmp_path_factory, mesh, sample_db):
    a = App(tmp_path_factory.mktemp("app"), mesh, sample_db)
    yield a
    a.stop()


def test_eval_on_the_mocks_recorded_answers(mesh, sample_db, tmp_path):
    report_path = tmp_path / "report.json"
    done = analyst("eval", "--base-url", base_url(mesh), "--db", str(sample_db),
                   "--json", str(report_path), "--record", str(tmp_path / "recorded.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(report_path.read_text())
    results = {r["id"]: r for r in report["results"]}
    assert len(results) == len(QUESTIONS) >= 50
    failed = {i for i, r in results.items() if not r["ok"]}
    assert failed == WRONG, done.stdout
    assert {i for i, r in results.items() if r["repaired"]} == REPAIRED
    # the failed repair shows both rejected queries and the database's last word
    assert [a["error"] is not None for a in results["q52"]["attempts"]] == [True, True]
    assert "no such function: YEAR" in results["q52"]["why"]
    # the scorer says why a wrong answer is wrong
    assert "reference's 'revenue'" in results["q22"]["why"]
    correct = len(QUESTIONS) - len(WRONG)
    assert report["correct"] == correct
    assert "execution accuracy: %d of %d (%.1f %%)" % (
        correct, len(QUESTIONS), 100.0 * correct / len(QUESTIONS)) in done.stdout
    assert "generation time: p50 " in done.stdout and "repair rounds: 4, of which 3" in done.stdout
    assert 0 < report["generation_p50_ms"] <= report["generation_p95_ms"]
    # every question that names a chart got that chart from its real result
    for q in QUESTIONS:
        if "chart" in q and q["id"] not in WRONG:
            assert results[q["id"]]["chart"] == q["chart"], q["id"]
    # a run's answers can be recorded for the mock: the same recordings back
    recorded = json.loads((tmp_path / "recorded.json").read_text())["recordings"]
    shipped = json.loads((REPO / "examples/analyst/eval/replay.json").read_text())["recordings"]
    calls = [r for r in shipped if "tool_call" in r]
    assert [(r["prompt"], r.get("after_tool"), r["tool_call"]["arguments"]["sql"])
            for r in recorded] == \
        [(r["prompt"], r.get("after_tool"), r["tool_call"]["arguments"]["sql"]) for r in calls]
    sys.stdout.write("\n" + done.stdout[done.stdout.index("execution accuracy"):])


def test_make_analyst_eval_starts_and_stops_its_own_mesh(tmp_path):
    """make analyst-eval with no gateway answering: it starts the mesh of the
    config (here local.json on free ports), runs the evaluation, stops it."""
    from meshlib import Mesh
    from conftest import TEST_CONFIG
    config = Mesh(tmp_path, TEST_CONFIG)       # writes the config only; nothing runs yet
    env = dict(os.environ, ANALYST_MESH_CONFIG=str(config.config_path))
    env.pop("DEEPSEEK_API_KEY", None)
    done = subprocess.run(["make", "-s", "--no-print-directory", "analyst-eval"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no gateway at http://127.0.0.1:%d/v1; starting a mesh" % config.port in done.stdout
    correct = len(QUESTIONS) - len(WRONG)
    assert "execution accuracy: %d of %d" % (correct, len(QUESTIONS)) in done.stdout
    assert re.search(r"generation time: p50 \d+ ms, p95 \d+ ms", done.stdout), done.stdout
    # and the mesh is gone again
    status = subprocess.run([str(REPO / "scripts/mesh"), "status"], capture_output=True,
                            text=True, env=dict(env, SEEKMESH_RUN_DIR=str(tmp_path / "analyst-run")))
    assert status.returncode != 0, status.stdout
    with socket.socket() as s:                  # nothing listens on the ingress's port
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", config.port))


def test_ask_on_the_command_line(mesh, sample_db):
    done = analyst("ask", "What was the revenue of each region in 2024?", "--db", str(sample_db),
                   "--base-url", base_url(mesh), "--summary")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("SELECT r.name AS region")
    assert any(line.split() == ["South", "176682.75"] for line in lines)
    assert "5 rows · chart: bar" in done.stdout
    assert "In 2024 the South region brought in the most revenue" in done.stdout
    # the repair round, as the command line shows it
    done = analyst("ask", "How many completed orders had a 20% discount?", "--db", str(sample_db),
                   "--base-url", base_url(mesh), "--json")
    answer = json.loads(done.stdout)
    assert [a["error"] for a in answer["attempts"]] == ["no such column: o.discount_pct", None]
    assert answer["rows"] == [[790]] and answer["chart"]["type"] == "none"
    # a question the recordings do not know: the mock's tool call has no SQL,
    # that goes back as an error, and the mock (after a tool message) answers
    # in words: the application shows them instead of looping
    done = analyst("ask", "What is the meaning of life?", "--db", str(sample_db),
                   "--base-url", base_url(mesh), "--json")
    answer = json.loads(done.stdout)
    assert done.returncode == 1
    assert answer["message"] == "Echo: What is the meaning of life?"
    assert len(answer["attempts"]) == 1 and "run_sql needs a \"sql\"" in answer["attempts"][0]["error"]


def audit_records(mesh):
    """The gateway's audit records, prompts decrypted by seekmeshctl."""
    mesh.wait_metric("ingress", "seekmesh_ingress_audit_unacked", lambda v: v == 0)
    env = dict(os.environ, SEEKMESH_AUDIT_DIR=str(mesh.run_dir / "audit"))
    done = subprocess.run([str(BIN / "seekmeshctl"), "audit", "query", "--since", "1h",
                           "--decrypt", "--json"], capture_output=True, text=True, env=env,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def sent_since(mesh, seen):
    """The request bodies of the records not in seen (a set of ids), in order."""
    new = [r for r in audit_records(mesh) if r["id"] not in seen]
    return [json.loads(r["prompt"]) for r in sorted(new, key=lambda r: (r["start"], r["seq"]))]


def test_rows_reach_the_model_only_for_a_summary(mesh, sample_db):
    """What went upstream, read back from the gateway's own audit trail."""
    seen = {r["id"] for r in audit_records(mesh)}
    question = "What was the revenue of each category in December 2024?"
    done = analyst("ask", question, "--db", str(sample_db), "--base-url", base_url(mesh),
                   "--json")
    answer = json.loads(done.stdout)
    values = [str(row[1]) for row in answer["rows"]]
    assert len(values) == 6
    sent = sent_since(mesh, seen)
    assert len(sent) == 1 and sent[0]["messages"][-1] == {"role": "user", "content": question}
    assert sent[0]["tools"][0]["function"]["name"] == "run_sql"
    text = json.dumps(sent[0])
    assert not [v for v in values if v in text], "result values went to the model"
    # the summary carries them
    seen = {r["id"] for r in audit_records(mesh)}
    done = analyst("ask", question, "--db", str(sample_db), "--base-url", base_url(mesh),
                   "--summary", "--json")
    sent = sent_since(mesh, seen)
    assert len(sent) == 2
    assert not [v for v in values if v in json.dumps(sent[0])]
    assert sent[1]["messages"][-1]["role"] == "tool"
    assert all(v in sent[1]["messages"][-1]["content"] for v in values)


def test_gateway_refusal_is_reported(mesh, sample_db):
    done = analyst("ask", "How many customers are there?", "--db", str(sample_db),
                   "--base-url", base_url(mesh), "--api-key", "sk-wrong", "--json")
    answer = json.loads(done.stdout)
    assert done.returncode == 1
    assert answer["upstream_status"] == 401
    assert answer["error"].startswith("the model gateway answered 401")
    port = free_port()                  # nothing listens there
    done = analyst("ask", "How many customers are there?", "--db", str(sample_db),
                   "--base-url", "http://127.0.0.1:%d/v1" % port, "--json")
    assert "cannot reach the model gateway" in json.loads(done.stdout)["error"]


def test_api_answers_and_refusals(app):
    status, info = app.get("/api/info")
    assert status == 200 and info["dialect"] == "sqlite" and info["today"] == "2025-01-01"
    assert sorted(t["name"] for t in info["tables"]) == ["customers", "orders", "products",
                                                        "regions"]
    status, answer = app.request("POST", "/api/ask", {"question": "How many customers are there?"})
    assert status == 200 and answer["rows"] == [[1500]]
    assert answer["sql"] == "SELECT COUNT(customer_id) AS customer_count FROM customers;"
    status, answer = app.request("POST", "/api/run", {"sql": "SELECT name FROM regions ORDER BY 1"})
    assert status == 200 and [r[0] for r in answer["rows"]] == ["Central", "East", "North",
                                                                 "South", "West"]
    # the guard, through the API
    for sql, says in [("DELETE FROM orders", "starts with DELETE"),
                      ("SELECT 1; DROP TABLE orders", "only one statement"),
                      ("PRAGMA writable_schema = 1", "starts with PRAGMA"),
                      ("ATTACH DATABASE '/tmp/x.db' AS x", "starts with ATTACH")]:
        status, answer = app.request("POST", "/api/run", {"sql": sql})
        assert status == 200 and says in answer["error"], answer
    # bad requests
    assert app.request("POST", "/api/ask", b"{not json")[0] == 400
    assert app.request("POST", "/api/ask", {"question": "  "}) == \
        (400, {"error": "\"question\" must be a non-empty string"})
    assert app.request("POST", "/api/ask", [1, 2])[0] == 400
    assert app.request("POST", "/api/ask", b"x" * (65 * 1024))[0] == 413
    assert app.request("POST", "/api/nope", {})[0] == 404
    assert app.get("/nope")[0] == 404
    assert app.request("POST", "/api/summary", {"question": "q"})[0] == 400


def test_browser_question_sql_table_and_chart(app, tmp_path):
    from webdriver import Browser
    with Browser(tmp_path) as browser:
        browser.get(app.url)
        browser.wait(lambda: "tables" in browser.find("#info").text, what="the page's info line")
        question = "What was the revenue of each region in 2024?"
        browser.find("#question").send_keys(question)
        browser.find("#ask").click()
        browser.wait(lambda: browser.find_all("#chart svg"), what="a chart")
        sql = browser.find("#sql").prop("value")
        assert sql.startswith("SELECT r.name AS region") and "JOIN regions" in sql
        header = [th.text for th in browser.find_all("#table thead th")]
        assert header == ["region", "revenue"]
        rows = browser.find_all("#table tbody tr")
        assert len(rows) == 5
        assert rows[0].text.split() == ["South", "176,682.75"]
        assert browser.find("#chart svg").attr("data-chart") == "bar"
        assert len(browser.find_all("#chart svg rect.bar")) == 5
        assert question in browser.find("#history").text
        browser.screenshot(tmp_path / "answer.png")

        # the analyst edits the SQL and runs it again: no model involved
        browser.find("#sql").clear()
        browser.find("#sql").send_keys(
            "SELECT category, COUNT(*) AS products FROM products GROUP BY category")
        browser.find("#run").click()
        browser.wait(lambda: len(browser.find_all("#table tbody tr")) == 6, what="6 rows")
        assert len(browser.find_all("#chart svg rect.bar")) == 6

        # a summary: only now does the result go to the model
        browser.find("#summarise").click()
        browser.wait(lambda: browser.find("#summary").text, what="a summary")
        assert browser.find("#summary").text.startswith("In 2024 the South region")

        # a time column makes a line, one point per month
        browser.find("#question").clear()
        browser.find("#question").send_keys("Show the monthly revenue for 2024.")
        browser.find("#ask").click()
        browser.wait(lambda: browser.find_all("#chart svg[data-chart=line]"), what="a line chart")
        assert len(browser.find_all("#chart svg circle.point")) == 12
        assert len(browser.find_all("#chart svg rect.bar")) == 0

        # history: both questions, the latest first; a click shows its answer
        items = browser.find_all("#history li")
        assert [i.text for i in items][:2] == ["Show the monthly revenue for 2024.", question]
        items[1].click()
        browser.wait(lambda: len(browser.find_all("#chart svg rect.bar")) == 5,
                     what="the first answer again")
        browser.screenshot(tmp_path / "history.png")
