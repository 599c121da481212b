"""make analyst-load: 200 concurrent analysts on one examples/analyst process.

Starts a mesh on free loopback ports (the mock upstream replaying the
evaluation's recorded answers), one `analyst serve` process, and wrk with
one connection per analyst (tests/bench/analyst_ask.lua), each asking the
evaluation's questions in turn: every request is a whole
question (the model call through the mesh, the guard, SQLite, the chart).
Prints the answers per second, the latency percentiles wrk measured and the
application's CPU per question, for each model speed and think time asked
for: --model-ms 0 is the mock answering at once (the application's own
cost), N > 0 makes each model answer take about N ms (mock.token_delay_ms);
--think-ms T has each analyst read an answer for 0.5 T to 1.5 T before the
next question, 0 asks again at once (the most the process can take).

    /usr/bin/python3 tests/bench/analyst_load.py [--analysts 200] [--seconds 30]
                                                 [--model-ms 0,300] [--think-ms 5000,0]
Loopback only; every run is bounded by --seconds.
"""
import argparse
import copy
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from meshlib import Mesh  # noqa: E402

ANALYST = REPO / "examples" / "analyst" / "bin" / "analyst"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def measure(args, url, think_ms, bodies, app):
    env = dict(os.environ, ANALYST_BODIES=str(bodies), ANALYST_THINK_MS=str(think_ms))
    wrk = ["wrk", "-t2", "-c%d" % args.analysts, "--timeout", "30s",
           "-s", str(HERE / "analyst_ask.lua")]
    subprocess.run(wrk + ["-d3s", url], env=env, capture_output=True, timeout=60)  # warm-up
    cpu0 = cpu_seconds(app.pid)
    done = subprocess.run(wrk + ["-d%ds" % args.seconds, "--latency", url], env=env,
                          capture_output=True, text=True, timeout=args.seconds + 60)
    cpu = cpu_seconds(app.pid) - cpu0
    line = next((l for l in done.stdout.splitlines() if l.startswith("ANALYST_LOAD")), None)
    if not line:
        raise RuntimeError("wrk printed no result:\n%s%s" % (done.stdout, done.stderr))
    r = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    seconds = r["duration_us"] / 1e6
    return {"think_ms": think_ms, "analysts": args.analysts, "seconds": round(seconds, 1),
            "questions": r["requests"], "answered": r["answered"], "failed": r["failed"],
            "socket_errors": r["socket_errors"], "per_second": round(r["requests"] / seconds, 1),
            "p50_ms": r["p50_us"] / 1000, "p95_ms": r["p95_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "max_ms": r["max_us"] / 1000,
            "app_cpu_ms_per_question": round(1000 * cpu / max(r["requests"], 1), 2),
            "app_rss_mib": round(rss_kib(app.pid) / 1024, 1),
            "app_threads": len(os.listdir("/proc/%d/task" % app.pid))}


def run(args, model_ms, thinks, tmp, bodies):
    """One mesh whose model answers in model_ms, one application; a
    measurement per think time."""
    # A tool-call answer is 3 deltas: delay_ms = model_ms / 3 makes it take model_ms
    config = json.loads((REPO / "compose/config/local.json").read_text())
    models = copy.deepcopy(config["models"])
    for m in models:
        m["max_concurrency"] = max(m.get("max_concurrency", 0), 2 * args.analysts)
    overrides = {"mock": {"token_delay_ms": model_ms // 3, "threads": 1},
                 "models": models, "mesh": {"drain_ms": 2000}}
    (tmp / ("mesh-%d" % model_ms)).mkdir()
    mesh = Mesh(tmp / ("mesh-%d" % model_ms), overrides).up()
    app = None
    try:
        port = free_port()
        log = open(tmp / ("app-%d.log" % model_ms), "w")
        app = subprocess.Popen([sys.executable, str(ANALYST), "serve", "--listen",
                                "127.0.0.1:%d" % port, "--db", str(tmp / "sales.db"),
                                "--base-url", "http://%s:%d/v1" % (mesh.host, mesh.port)],
                               stderr=log, cwd=REPO)
        url = "http://127.0.0.1:%d/" % port
        deadline = time.time() + 10
        while True:
            try:
                urllib.request.urlopen(url + "healthz", timeout=1).read()
                break
            except OSError:
                if app.poll() is not None or time.time() > deadline:
                    raise RuntimeError("analyst serve did not start")
                time.sleep(0.05)
        results = []
        for think_ms in thinks:
            r = measure(args, url, think_ms, bodies, app)
            r["model_ms"] = model_ms
            results.append(r)
            print("%d analysts, %.0f s, model answers in %s, %s: %d questions (%.1f/s), "
                  "%d answered, %d failed, %d socket errors; latency p50 %.1f ms, p95 %.1f ms, "
                  "p99 %.1f ms, max %.1f ms; application CPU %.2f ms/question, RSS %.1f MiB, "
                  "%d threads"
                  % (r["analysts"], r["seconds"], "%d ms" % model_ms if model_ms else
                     "no time (the mock at once)",
                     "thinking %d ms between questions" % think_ms if think_ms else
                     "no pause between questions",
                     r["questions"], r["per_second"], r["answered"], r["failed"],
                     r["socket_errors"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"],
                     r["app_cpu_ms_per_question"], r["app_rss_mib"], r["app_threads"]),
                  flush=True)
        return results
    finally:
        if app:
            app.terminate()
            app.wait(10)
        mesh.down()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--analysts", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--model-ms", default="0,300",
                        help="model answer times to run, comma-separated")
    parser.add_argument("--think-ms", default="5000,0",
                        help="mean pause of an analyst between questions, comma-separated "
                        "(each a run)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 600:
        parser.error("--seconds must be 1..600")
    questions = json.loads((REPO / "examples/analyst/eval/questions.json").read_text())["questions"]
    recorded = {r["prompt"] for r in json.loads(
        (REPO / "examples/analyst/eval/replay.json").read_text())["recordings"]}
    with tempfile.TemporaryDirectory(prefix="analyst-load-") as t:
        tmp = Path(t)
        subprocess.run([sys.executable, str(ANALYST), "sample", str(tmp / "sales.db")],
                       check=True, capture_output=True)
        # the questions whose recorded answers give rows (q52's repair fails)
        bodies = tmp / "bodies.txt"
        asked = [q["question"] for q in questions if q["question"] in recorded and
                 q["id"] != "q52"]
        bodies.write_text("".join(json.dumps({"question": q}) + "\n" for q in asked))
        results = []
        thinks = [int(x) for x in args.think_ms.split(",")]
        for model_ms in [int(x) for x in args.model_ms.split(",")]:
            results += run(args, model_ms, thinks, tmp, bodies)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
