"""The evaluation: every question of eval/questions.json through the whole
pipeline (the gateway, the model, the guard, the database), scored by
execution accuracy: the answer's result equals the reference query's.

"Equals" is read the way an analyst would: rows in any order (a multiset),
columns in any order and extra columns allowed (each reference column must
be one of the answer's, with the same rows), numbers equal to the cent
(rounded half up to 2 decimals, so 3 = 3.0 and ROUND(x, 2) matches x),
and a number written as text ('2024') equal to the number.  Each
reference result is pinned in the file (row count and SHA-256), so a
sample database that differs from the one the references were written on
stops the run instead of scoring against the wrong rows.

Generation time is the time spent waiting for the model, repair round
included; p50 and p95 are nearest-rank percentiles.
"""
import collections
import decimal
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
EVAL_DIR = os.path.join(REPO, "examples", "analyst", "eval")
QUESTIONS = os.path.join(EVAL_DIR, "questions.json")

_NUMBER_TEXT = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?$")
_CENT = decimal.Decimal("0.01")


def normalise(value):
    """A comparable, hashable form of one cell."""
    if value is None:
        return ("null", "")
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, str) and _NUMBER_TEXT.match(value.strip()):
        value = float(value.strip())
    if isinstance(value, (int, float)):
        d = decimal.Decimal(repr(float(value)) if isinstance(value, float) else value)
        d = d.quantize(_CENT, rounding=decimal.ROUND_HALF_UP)
        return ("num", str(d + 0))      # + 0 turns -0.00 into 0.00
    return ("text", str(value))


def digest(rows):
    """SHA-256 of the rows as a multiset (order does not matter)."""
    lines = sorted(json.dumps([normalise(v) for v in row]) for row in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def same_result(ref_columns, ref_rows, columns, rows):
    """(True, "") or (False, why)."""
    if len(rows) != len(ref_rows):
        return False, "%d rows, the reference has %d" % (len(rows), len(ref_rows))
    n_ref, n = len(ref_columns), len(columns)
    if n < n_ref:
        return False, "%d columns, the reference has %d" % (n, n_ref)
    ref = [[normalise(v) for v in row] for row in ref_rows]
    got = [[normalise(v) for v in row] for row in rows]
    ref_cols = [sorted(r[i] for r in ref) for i in range(n_ref)]
    got_cols = [sorted(r[j] for r in got) for j in range(n)]
    options = [[j for j in range(n) if got_cols[j] == ref_cols[i]] for i in range(n_ref)]
    for i, opts in enumerate(options):
        if not opts:
            return False, "no column holds the values of the reference's %r" % ref_columns[i]
    want = collections.Counter(tuple(r) for r in ref)

    def search(i, used):
        if i == n_ref:
            return collections.Counter(tuple(r[j] for j in used) for r in got) == want
        return any(search(i + 1, used + [j]) for j in options[i] if j not in used)

    if search(0, []):
        return True, ""
    return False, "the columns hold the right values but not in the same rows"


def percentile(values, p):
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, int(-(-p * len(ordered) // 100)))      # nearest rank
    return ordered[min(rank, len(ordered)) - 1]


def load_questions(path=QUESTIONS):
    with open(path) as f:
        data = json.load(f)
    ids = [q["id"] for q in data["questions"]]
    if len(set(ids)) != len(ids):
        raise ValueError("%s: duplicate question ids" % path)
    return data


# --- the gateway -------------------------------------------------------------

def gateway_answers(base_url, api_key, timeout=2.0):
    request = urllib.request.Request(base_url.rstrip("/") + "/models",
                                     headers={"Authorization": "Bearer " + api_key})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


class OwnMesh:
    """The mesh of a config: `make run`'s choice (the mock upstream, or
    DeepSeek with DEEPSEEK_API_KEY) unless $ANALYST_MESH_CONFIG names
    another.  The run uses its gateway if one answers, else starts it
    (scripts/mesh, a run directory of its own) and stops it after."""

    def __init__(self):
        deepseek = bool(os.environ.get("DEEPSEEK_API_KEY"))
        self.config = os.environ.get("ANALYST_MESH_CONFIG") or os.path.join(
            REPO, "compose", "config", "deepseek.json" if deepseek else "local.json")
        self.upstream = "api.deepseek.com" if deepseek else "the built-in mock"
        if os.environ.get("ANALYST_MESH_CONFIG"):
            self.upstream = "as its config says"
            run_dir = os.path.join(os.path.dirname(os.path.abspath(self.config)), "analyst-run")
        else:
            run_dir = os.path.join(REPO, "build", "analyst-eval", "run")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SEEKMESH_") or k == "SEEKMESH_ADMIN_TOKEN"}
        self.env.update({"SEEKMESH_RUN_DIR": run_dir, "SEEKMESH_CONFIG": self.config})
        if deepseek:
            self.env["SEEKMESH_MESH_SERVICES"] = "redis audit router connector ingress"
        with open(self.config) as f:
            config = json.load(f)
        self.base_url = "http://%s/v1" % config["ingress"]["listen"]
        self.api_key = config["keys"][0]["key"]

    def _mesh(self, *args):
        return subprocess.run([os.path.join(REPO, "scripts", "mesh"), *args], env=self.env,
                              cwd=REPO, capture_output=True, text=True)

    def up(self):
        done = self._mesh("up", "-c", self.config)
        if done.returncode != 0:
            self._mesh("down")
            raise RuntimeError("cannot start a mesh: %s%s" % (done.stdout, done.stderr))
        return self

    def down(self):
        self._mesh("down")


# --- the run -----------------------------------------------------------------

def evaluate(analyst, reference_db, questions, out=sys.stdout, only=None):
    """Runs every question; returns the report (a dict)."""
    results = []
    for q in questions:
        if only and q["id"] not in only:
            continue
        ref = reference_db.run(q["sql"], max_rows=1000000)
        pinned = q.get("result") or {}
        if pinned and (pinned.get("rows") != len(ref.rows) or pinned.get("sha256") != digest(ref.rows)):
            raise RuntimeError("%s: the reference query's result is not the pinned one: the sample "
                               "database differs from the one the references were written on"
                               % q["id"])
        started = time.monotonic()
        answer = analyst.ask(q["question"])
        wall_ms = (time.monotonic() - started) * 1000
        if answer.get("error") or answer.get("columns") is None:
            ok, why = False, answer.get("error") or answer.get("message") or "no result"
        elif answer.get("truncated"):
            ok, why = False, "the result was cut at the row limit"
        else:
            ok, why = same_result(ref.columns, ref.rows, answer["columns"], answer["rows"])
        repaired = ok and len(answer.get("attempts", [])) > 1
        result = {"id": q["id"], "question": q["question"], "ok": ok, "why": why,
                  "sql": answer.get("sql"), "attempts": answer.get("attempts", []),
                  "message": answer.get("message"), "repaired": repaired,
                  "generation_ms": answer.get("generation_ms", 0.0), "wall_ms": round(wall_ms, 1),
                  "chart": (answer.get("chart") or {}).get("type")}
        results.append(result)
        mark = "ok  " if ok else "FAIL"
        note = " (repaired)" if repaired else "" if ok else " - " + why
        out.write("%s %-4s %7.1f ms  %s%s\n" % (mark, q["id"], result["generation_ms"],
                                                q["question"], note))
        out.flush()
    times = [r["generation_ms"] for r in results]
    correct = sum(r["ok"] for r in results)
    return {"questions": len(results), "correct": correct,
            "accuracy": correct / len(results) if results else 0.0,
            "repaired": sum(r["repaired"] for r in results),
            "repair_rounds": sum(len(r["attempts"]) > 1 for r in results),
            "generation_p50_ms": percentile(times, 50), "generation_p95_ms": percentile(times, 95),
            "results": results}


def recordings(report):
    """The model's answers of a run as mock.replay_file recordings, so that a
    run against a real model can be replayed later."""
    out = []
    for r in report["results"]:
        attempts = r["attempts"]
        if not attempts:
            if r["message"]:
                out.append({"prompt": r["question"], "content": r["message"]})
            continue
        first = attempts[0]
        out.append({"prompt": r["question"],
                    "tool_call": {"name": "run_sql", "arguments": {"sql": first["sql"] or ""}}})
        if len(attempts) > 1 and first["error"]:
            out.append({"prompt": r["question"], "after_tool": first["error"][:120],
                        "tool_call": {"name": "run_sql",
                                      "arguments": {"sql": attempts[1]["sql"] or ""}}})
    return {"recordings": out}


def print_summary(report, out=sys.stdout):
    out.write("\nexecution accuracy: %d of %d (%.1f %%)\n"
              % (report["correct"], report["questions"], 100 * report["accuracy"]))
    out.write("generation time: p50 %.0f ms, p95 %.0f ms\n"
              % (report["generation_p50_ms"], report["generation_p95_ms"]))
    out.write("repair rounds: %d, of which %d ended in the right result\n"
              % (report["repair_rounds"], report["repaired"]))
