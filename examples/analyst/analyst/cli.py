"""The command line.

    analyst serve [--listen HOST:PORT]      the web application
    analyst ask QUESTION [--summary]        prints the SQL, the table, the chart type
    analyst sql SQL                         runs SQL through the guard (no model)
    analyst eval [--json FILE] [--record FILE] [--only ID,...]
                                            the evaluation (make analyst-eval)
    analyst sample [PATH]                   (re)generates the sample database

Common options: --db (a SQLite file or a PostgreSQL DSN; default the sample
database, generated on first use), --base-url / $ANALYST_BASE_URL (the
gateway, default http://127.0.0.1:8080/v1), --api-key / $ANALYST_API_KEY
(default the local development key), --model / $ANALYST_MODEL (default
deepseek-chat), --today, --context, --time-limit, --max-rows.
"""
import argparse
import datetime
import json
import os
import sys

from . import evaluate
from . import sample
from .db import QueryError, open_database
from .guard import GuardError
from .llm import ChatClient
from .pipeline import Analyst

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE_DB = os.path.join(evaluate.REPO, "build", "analyst", "sample.db")
SAMPLE_CONTEXT = os.path.join(HERE, "sample_context.txt")
DEFAULT_BASE_URL = "http://127.0.0.1:8080/v1"
DEFAULT_KEY = "sk-seekmesh-dev"


def _options(parser):
    parser.add_argument("--db", help="SQLite file or PostgreSQL DSN (default: the sample)")
    parser.add_argument("--base-url", default=os.environ.get("ANALYST_BASE_URL"),
                        help="the gateway's OpenAI-compatible base URL (default %s)"
                        % DEFAULT_BASE_URL)
    parser.add_argument("--api-key", default=os.environ.get("ANALYST_API_KEY", DEFAULT_KEY))
    parser.add_argument("--model", default=os.environ.get("ANALYST_MODEL", "deepseek-chat"))
    parser.add_argument("--today", help="the date relative questions mean (YYYY-MM-DD; "
                        "default: %s for the sample database, else today)" % sample.TODAY)
    parser.add_argument("--context", help="a text file of notes and example queries for the "
                        "prompt (default: the sample's, for the sample)")
    parser.add_argument("--time-limit", type=float, default=5.0, help="seconds per query")
    parser.add_argument("--max-rows", type=int, default=1000, help="rows a result keeps")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per model call")


def _analyst(args, max_rows=None):
    target = args.db or sample.ensure_sqlite(SAMPLE_DB)
    is_sample = sample.is_sample(target)
    db = open_database(target, time_limit_s=args.time_limit, max_rows=max_rows or args.max_rows)
    today = args.today or (sample.TODAY.isoformat() if is_sample else
                           datetime.date.today().isoformat())
    context_file = args.context or (SAMPLE_CONTEXT if is_sample else None)
    context = ""
    if context_file:
        with open(context_file) as f:
            context = f.read()
    client = ChatClient(args.base_url or DEFAULT_BASE_URL, args.api_key, args.model,
                        timeout_s=args.timeout)
    return Analyst(db, client, today, context)


def _print_table(columns, rows, out, limit=50):
    cells = [[("" if v is None else str(v)) for v in row] for row in rows[:limit]]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for row, raw in zip(cells, rows):
        out.write("  ".join(c.rjust(w) if isinstance(v, (int, float)) else c.ljust(w)
                            for c, w, v in zip(row, widths, raw)).rstrip() + "\n")
    if len(rows) > limit:
        out.write("... %d more rows\n" % (len(rows) - limit))


def _print_answer(answer, out):
    for attempt in answer.get("attempts", []):
        if attempt["error"]:
            out.write("-- rejected: %s\n%s\n\n" % (attempt["error"], attempt["sql"] or "(no SQL)"))
    if answer.get("message"):
        out.write("The model: %s\n" % answer["message"])
    if answer.get("sql") and not answer.get("error"):
        out.write("%s\n\n" % answer["sql"])
    if answer.get("error"):
        out.write("error: %s\n" % answer["error"])
        return 1
    _print_table(answer["columns"], answer["rows"], out)
    chart = answer.get("chart") or {}
    out.write("\n%d row%s%s · chart: %s · generation %s ms · query %s ms\n" % (
        len(answer["rows"]), "" if len(answer["rows"]) == 1 else "s",
        " (cut at the row limit)" if answer.get("truncated") else "",
        chart.get("type") if chart.get("type") != "none" else "none (%s)" % chart.get("reason"),
        answer.get("generation_ms", "-"), answer.get("query_ms", "-")))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="analyst", description="Ask a database a question "
                                     "in plain language, through seekmesh.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="the web application")
    p.add_argument("--listen", default="127.0.0.1:8090")
    p.add_argument("--access-log", action="store_true")
    _options(p)
    p = sub.add_parser("ask", help="one question on the command line")
    p.add_argument("question")
    p.add_argument("--summary", action="store_true", help="also send the result to the model "
                   "for a summary")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    _options(p)
    p = sub.add_parser("sql", help="run SQL through the guard, without the model")
    p.add_argument("sql")
    _options(p)
    p = sub.add_parser("eval", help="the evaluation set, scored by execution accuracy")
    p.add_argument("--questions", default=evaluate.QUESTIONS)
    p.add_argument("--json", dest="json_out", help="write the full report here")
    p.add_argument("--record", help="write the model's answers as mock recordings here")
    p.add_argument("--only", help="question ids, comma-separated")
    p.add_argument("--min-accuracy", type=float, default=0.0,
                   help="exit 1 below this accuracy (0..1)")
    _options(p)
    p = sub.add_parser("sample", help="(re)generate the sample database")
    p.add_argument("path", nargs="?", default=SAMPLE_DB)
    args = parser.parse_args(argv)

    if args.command == "sample":
        print(sample.make_sqlite(args.path))
        return 0
    try:
        if args.command == "serve":
            host, _, port = args.listen.rpartition(":")
            from .server import serve
            serve(_analyst(args), host or "127.0.0.1", int(port), args.access_log)
            return 0
        if args.command == "sql":
            analyst = _analyst(args)
            answer = analyst.run(args.sql)
            if answer.get("error"):
                print("error: %s" % answer["error"], file=sys.stderr)
                return 1
            return _print_answer(answer, sys.stdout)
        if args.command == "ask":
            analyst = _analyst(args)
            answer = analyst.ask(args.question)
            if args.summary and answer.get("sql") and not answer.get("error"):
                answer["summary"] = analyst.summarise(answer["question"], answer["sql"])
            if args.json:
                json.dump(answer, sys.stdout, indent=1)
                sys.stdout.write("\n")
                return 1 if answer.get("error") else 0
            status = _print_answer(answer, sys.stdout)
            if answer.get("summary"):
                s = answer["summary"]
                print("\n%s" % (s.get("summary") or "summary failed: %s" % s.get("error")))
            return status
        if args.command == "eval":
            return _eval(args)
    except (QueryError, GuardError, ValueError, OSError) as e:
        print("analyst: %s" % e, file=sys.stderr)
        return 2
    return 0


def _shown(path):
    """A path as the user would write it: relative inside the repository."""
    path = os.path.abspath(path)
    inside = path.startswith(evaluate.REPO + os.sep)
    return os.path.relpath(path, evaluate.REPO) if inside else path


def _eval(args):
    data = evaluate.load_questions(args.questions)
    if args.db and not sample.is_sample(args.db):
        print("analyst eval: the questions are about the sample database (analyst sample); "
              "%s is not it" % args.db, file=sys.stderr)
        return 2
    mesh = None
    if not args.base_url:
        own = evaluate.OwnMesh()
        if evaluate.gateway_answers(own.base_url, own.api_key):
            args.base_url, args.api_key = own.base_url, own.api_key
        else:
            print("analyst eval: no gateway at %s; starting a mesh (%s, upstream %s)"
                  % (own.base_url, _shown(own.config), own.upstream),
                  flush=True)
            mesh = own.up()
            args.base_url, args.api_key = mesh.base_url, mesh.api_key
    try:
        analyst = _analyst(args, max_rows=1000000)
        print("analyst eval: %d questions, model %s through %s"
              % (len(data["questions"]), analyst.client.model, analyst.client.base_url))
        only = set(args.only.split(",")) if args.only else None
        report = evaluate.evaluate(analyst, analyst.db, data["questions"], only=only)
    finally:
        if mesh:
            mesh.down()
    evaluate.print_summary(report)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)
    if args.record:
        with open(args.record, "w") as f:
            json.dump(evaluate.recordings(report), f, indent=1)
            f.write("\n")
    return 0 if report["accuracy"] >= args.min_accuracy else 1
