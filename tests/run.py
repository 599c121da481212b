#!/usr/bin/env python3
"""make test: every stage, each to its end even when an earlier one failed,
then one verdict for the whole run as the last line:

    N passed, N failed

counting each selftest (mesh-selftest's modules, and tests/unit's checks
of the documents against the code), each fuzz target's corpus
replay, each integration test (pytest), each test of the openai SDK
(tests/sdk, run by test_sdk.py), each test of examples/analyst
(tests/analyst), each check of the deployment files (tests/deploy) and the
benchmark smoke run as one.  A
stage that cannot report its counts (it crashed, or its output has no
summary) counts as one failure.  Skipped tests count as neither and are
named on their stage's line.  Exit status 0 only when nothing failed.

    tests/run.py [STAGE ...]     stages: unit fuzz integration sdk analyst deploy bench
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("SEEKMESH_BIN") or REPO / "build" / "bin")
PYTEST = ["/usr/bin/python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"]
MAKE = os.environ.get("MAKE", "make")


def run(command, env=None):
    """Runs command with its output passed through; returns (status, output).
    Its output is read until it exits (and a moment more): a process it left
    behind that still holds the pipe must not hold the whole run."""
    print("$ " + " ".join(str(c) for c in command), flush=True)
    proc = subprocess.Popen([str(c) for c in command], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    lines = []

    def read():
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    status = proc.wait()
    reader.join(5)
    if reader.is_alive():
        print("tests/run.py: %s exited, but something it started still holds its output"
              % command[0], flush=True)
    return status, "".join(lines)


def pytest_counts(output):
    """passed, failed (failures and errors), skipped from pytest's last line."""
    tail = output.strip().splitlines()[-1:] or [""]
    found = dict((word, int(n)) for n, word in
                 re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed)", tail[0]))
    if not found:
        return None
    return (found.get("passed", 0) + found.get("xpassed", 0),
            found.get("failed", 0) + found.get("error", 0) + found.get("errors", 0),
            found.get("skipped", 0) + found.get("xfailed", 0))


def stage_unit():
    """mesh-selftest's modules, then tests/unit's checks of the documents
    against the code (pytest)."""
    status, output = run([BIN / "mesh-selftest"])
    m = re.search(r"^(\d+) passed, (\d+) failed$", output, re.M)
    if not m:
        passed, failed, note = 0, 1, "mesh-selftest: no summary line (exit %d)" % status
    else:
        passed, failed, note = int(m.group(1)), int(m.group(2)), ""
        if status != 0 and failed == 0:
            failed = 1
    status, output = run(PYTEST + ["tests/unit"])
    counts = pytest_counts(output)
    if counts is None:
        return passed, failed + 1, 0, "tests/unit: no pytest summary (exit %d)" % status
    if status != 0 and counts[1] == 0:
        counts = (counts[0], 1, counts[2])
    return passed + counts[0], failed + counts[1], counts[2], note


def stage_fuzz():
    status, output = run([MAKE, "--no-print-directory", "fuzz"])
    passed = len(re.findall(r"^fuzz \S+\s+ok\b", output, re.M))
    failed = len(re.findall(r"^fuzz \S+\s+FAIL\b|^fuzz \S+: no seed corpus", output, re.M))
    if status != 0 and failed == 0:
        failed = 1          # the build of the targets failed
    return passed, failed, 0, ""


def stage_integration():
    status, output = run(PYTEST + ["tests/integration", "--ignore=tests/integration/test_sdk.py"])
    counts = pytest_counts(output)
    if counts is None:
        return 0, 1, 0, "no pytest summary (exit %d)" % status
    passed, failed, skipped = counts
    if status != 0 and failed == 0:
        failed = 1
    return passed, failed, skipped, ""


def stage_pytest(directory):
    status, output = run(PYTEST + [directory])
    counts = pytest_counts(output)
    if counts is None:
        return 0, 1, 0, "no pytest summary (exit %d)" % status
    passed, failed, skipped = counts
    if status != 0 and failed == 0:
        failed = 1
    return passed, failed, skipped, ""


def stage_deploy():
    return stage_pytest("tests/deploy")


def stage_analyst():
    status, output = run(PYTEST + ["tests/analyst"])
    counts = pytest_counts(output)
    if counts is None:
        return 0, 1, 0, "no pytest summary (exit %d)" % status
    passed, failed, skipped = counts
    if status != 0 and failed == 0:
        failed = 1
    return passed, failed, skipped, ""


def stage_sdk():
    with tempfile.TemporaryDirectory() as tmp:
        counts_file = Path(tmp) / "counts.json"
        env = dict(os.environ, SEEKMESH_TEST_COUNTS=str(counts_file))
        status, output = run(PYTEST + ["tests/integration/test_sdk.py"], env=env)
        if not counts_file.exists():
            #  the mesh or node never got to run the tests
            return 0, 1, 0, "the SDK tests did not run (exit %d)" % status
        counts = json.loads(counts_file.read_text())
    failed = counts["failed"]
    if status != 0 and failed == 0:
        failed = 1
    return counts["passed"], failed, counts["skipped"], ""


def stage_bench():
    status, output = run([MAKE, "--no-print-directory", "bench-smoke"])
    return (1, 0, 0, "") if status == 0 else (0, 1, 0, "exit %d" % status)


STAGES = [("selftests", "unit", stage_unit), ("fuzz replays", "fuzz", stage_fuzz),
          ("integration tests", "integration", stage_integration), ("SDK tests", "sdk", stage_sdk),
          ("analyst tests", "analyst", stage_analyst), ("deploy checks", "deploy", stage_deploy),
          ("bench smoke", "bench", stage_bench)]


def main():
    wanted = sys.argv[1:] or [key for _, key, _ in STAGES]
    unknown = set(wanted) - {key for _, key, _ in STAGES}
    if unknown:
        sys.exit("tests/run.py: unknown stage %s (stages: %s)" % (
            ", ".join(sorted(unknown)), " ".join(key for _, key, _ in STAGES)))
    rows = []
    for title, key, fn in STAGES:
        if key not in wanted:
            continue
        print("\n=== %s ===" % title, flush=True)
        try:
            rows.append((title,) + fn())
        except Exception as e:      # noqa: BLE001 - a stage that breaks is a failure, said so
            rows.append((title, 0, 1, 0, "%s: %s" % (type(e).__name__, e)))
    print("\n=== make test ===")
    for title, passed, failed, skipped, note in rows:
        extra = ", %d skipped" % skipped if skipped else ""
        print("%-18s %4d passed, %d failed%s%s" % (title, passed, failed, extra,
                                                    " (%s)" % note if note else ""))
    passed = sum(r[1] for r in rows)
    failed = sum(r[2] for r in rows)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
