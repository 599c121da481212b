"""seekmeshctl audit query | verify | export | rotate-key on a store on disk.

Most stores here are written by audit_fixture.c (compiled here against
build/libmesh.a) exactly as seekmesh-audit writes it: mesh_audit_store,
the key file made by `seekmeshctl audit rotate-key`, an Ed25519 signing key,
a checkpoint every five records.  The checkpoint tests take a store of three
day files written by the real seekmesh-audit, fed by its own bench client
(speaking as an ingress over CURVE), stopped, crashed and restarted, its
wall clock set to chosen days with libfaketime.  The tools read the files
directly (no service, no admin API).  Tampering is done with the sqlite3
command line, as someone with access to the disk would."""
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("SEEKMESH_BIN") or REPO / "build" / "bin")
CTL = BIN / "seekmeshctl"
LIBMESH = BIN.parent / "libmesh.a"

ECS_FIELDS = ("@timestamp", "event.id", "event.outcome", "event.duration",
              "http.response.status_code", "organization.id", "user.id", "gen_ai.request.model",
              "gen_ai.response.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
              "url.original", "cloud.region")


def _make_flags():
    """The Makefile's packages, so the fixture links as the services do."""
    pkgs = re.search(r"^PKGS\s*:=\s*(.*)$", (REPO / "Makefile").read_text(), re.M).group(1).split()
    cflags = subprocess.run(["pkg-config", "--cflags"] + pkgs, capture_output=True, text=True).stdout
    libs = subprocess.run(["pkg-config", "--libs"] + pkgs, capture_output=True, text=True).stdout
    return shlex.split(cflags), shlex.split(libs) + ["-lev", "-lpthread", "-lm"]


@pytest.fixture(scope="module")
def fixture_bin(tmp_path_factory):
    if not LIBMESH.exists() or not CTL.exists():
        pytest.skip("build first: make build/libmesh.a build/bin/seekmeshctl")
    out = tmp_path_factory.mktemp("fixture") / "audit_fixture"
    cflags, libs = _make_flags()
    cmd = ([os.environ.get("CC", "cc"), "-std=c11", "-D_GNU_SOURCE", "-O1", "-g",
            "-I", str(REPO / "common"), "-I", str(REPO / "proto")] + cflags +
           [str(REPO / "tests/integration/audit_fixture.c"), str(LIBMESH), "-o", str(out)] + libs)
    if "sanitize" in os.environ.get("ASAN_OPTIONS", "") or "build-asan" in str(BIN):
        cmd[1:1] = ["-fsanitize=address,undefined"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def ctl(*args, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_AUDIT")}
    full_env.update(env or {})
    r = subprocess.run([str(CTL), *map(str, args)], capture_output=True, text=True,
                       env=full_env, timeout=60)
    # An ASan build exits 1 on a report, which is also a verdict here
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr
    return r


def write(fixture_bin, store, count, first=0, every=5):
    r = subprocess.run([str(fixture_bin), str(store), str(count), "--first", str(first),
                        "--checkpoint-every", str(every)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Sanitizer" not in r.stderr, r.stderr
    return int(r.stdout)


@pytest.fixture
def store(tmp_path, fixture_bin):
    """A store of 20 records (seq 1..20), checkpoints at 5, 10, 15, 20."""
    d = tmp_path / "audit"
    d.mkdir()
    r = ctl("audit", "rotate-key", "--dir", d)
    assert r.returncode == 0, r.stderr
    assert write(fixture_bin, d, 20) == 20
    return d


def db_file(store):
    files = sorted(glob.glob(str(store / "audit-*.db")))
    assert len(files) == 1, files
    return files[0]


def sql(store, statement):
    r = subprocess.run(["sqlite3", db_file(store), statement], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def rows(result):
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


# --- query ---------------------------------------------------------------------

def test_query_lists_records_oldest_first_as_a_table(store):
    r = ctl("audit", "query", "--dir", store)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["TIME", "ID", "TENANT", "MODEL", "STATUS", "OUTCOME", "TOKENS",
                                "TTFT", "ms", "TOTAL", "ms"]
    assert len(lines) == 21
    times = [line.split()[0] for line in lines[1:]]
    assert times == sorted(times)
    assert "deepseek-reasoner" in lines[1] and " 429 " in lines[5] and "upstream_error" in lines[5]
    assert "secret prompt" not in r.stdout


@pytest.mark.parametrize("args,count", [
    ([], 20),
    (["--tenant", "t1"], 10),
    (["--model", "deepseek-reasoner"], 7),          # 0, 3, ..., 18
    (["--model", "deepseek-v4-pro"], 7),            # the name asked for matches too
    (["--status", "429"], 4),
    (["--outcome", "upstream_error"], 4),
    (["--tenant", "t0", "--status", "429"], 2),     # 4 and 14
    (["--limit", "3"], 3),
    (["--since", "1h"], 20),
    (["--since", "2026-01-01"], 20),
    (["--until", "2000-01-01T00:00:00Z"], 0),
    (["--tenant", "nobody"], 0),
])
def test_query_filters(store, args, count):
    found = rows(ctl("audit", "query", "--dir", store, "--json", *args))
    assert len(found) == count, args
    for row in found:
        assert "prompt" not in row and "response" not in row
        if "--tenant" in args:
            assert row["tenant"] == args[args.index("--tenant") + 1]


def test_query_since_and_until_cut_by_time(store):
    every = rows(ctl("audit", "query", "--dir", store, "--json"))
    middle = every[10]["start"]
    later = rows(ctl("audit", "query", "--dir", store, "--json", "--since", middle))
    earlier = rows(ctl("audit", "query", "--dir", store, "--json", "--until", middle))
    assert [r["seq"] for r in later] == list(range(11, 21))
    assert [r["seq"] for r in earlier] == list(range(1, 11))


def test_query_dir_from_the_environment(store):
    r = ctl("audit", "query", "--json", env={"SEEKMESH_AUDIT_DIR": str(store)})
    assert len(rows(r)) == 20


def test_decrypt_shows_prompt_and_response_text(store):
    r = ctl("audit", "query", "--dir", store, "--decrypt", "--limit", "5")
    assert r.returncode == 0, r.stderr
    for i in range(4):
        assert f"[user] secret prompt {i}" in r.stdout
        assert f"Echo: secret prompt {i}" in r.stdout
    assert "Thinking about: secret" in r.stdout          # a reasoner's stream
    assert "[error: Rate limit reached]" in r.stdout      # the 429
    found = rows(ctl("audit", "query", "--dir", store, "--json", "--decrypt"))
    assert all("secret prompt" in row["prompt"] for row in found)
    stream = found[0]
    assert stream["stream"] and json.loads(stream["response"])["object"] == "chat.completion"
    assert stream["response_text"] == "Echo: secret prompt 0"
    assert stream["reasoning_text"] == "Thinking about: secret"
    assert found[1]["response_text"] == "Echo: secret prompt 1"   # a chat.completion


def test_decrypt_without_the_key_file_is_a_clear_error(store, tmp_path):
    missing = tmp_path / "no-such-keys"
    r = ctl("audit", "query", "--dir", store, "--decrypt", "--key-file", missing)
    assert r.returncode == 2
    assert "--decrypt needs the audit key file" in r.stderr and str(missing) in r.stderr
    assert r.stdout == ""
    os.rename(store / "keys", tmp_path / "keys.away")
    r = ctl("audit", "query", "--dir", store, "--decrypt")
    assert r.returncode == 2 and "key file" in r.stderr
    r = ctl("audit", "query", "--dir", store, "--decrypt",
            env={"SEEKMESH_AUDIT_KEY_FILE": str(tmp_path / "keys.away")})
    assert r.returncode == 0 and "secret prompt 7" in r.stdout


def test_sqlite3_shows_ciphertext_not_prompt_text(store):
    dump = sql(store, ".dump")
    assert "INSERT INTO records" in dump
    assert "secret prompt" not in dump and "Echo: secret" not in dump
    # The plain columns are there for anyone to read; the prompt is bytes
    plain = sql(store, "SELECT tenant, model, status, enc_key_id, typeof(prompt) "
                       "FROM records WHERE seq = 5")
    tenant, model, status, key_id, kind = plain.strip().split("|")
    assert (tenant, model, status, kind) == ("t0", "deepseek-chat", "429", "blob")
    assert key_id == (store / "keys").read_text().split()[0]
    # Nor anywhere in the files' bytes
    for path in glob.glob(str(store / "audit-*")):
        assert b"secret prompt" not in Path(path).read_bytes(), path


# --- verify (scenario 19) -------------------------------------------------------------

def test_verify_a_clean_store(store):
    r = ctl("audit", "verify", "--dir", store)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: 20 records, seq 1 to 20, 1 day files, 4 checkpoints")
    r = ctl("--json", "audit", "verify", "--dir", store)
    assert json.loads(r.stdout)["ok"] is True


SCENARIO_19 = {
    "edited_column": ("UPDATE records SET status = 500 WHERE seq = 5", "seq 5 (id "),
    "edited_tenant": ("UPDATE records SET tenant = 't9' WHERE seq = 7", "seq 7 (id "),
    "edited_ciphertext": ("UPDATE records SET prompt = CAST(substr(prompt, 1, 20) || x'00' || "
                          "substr(prompt, 22) AS BLOB) WHERE seq = 6", "seq 6 (id "),
    "deleted_row": ("DELETE FROM records WHERE seq = 5", "seq 5: missing"),
    "swapped_rows": ("UPDATE records SET seq = -1 WHERE seq = 5; "
                     "UPDATE records SET seq = 5 WHERE seq = 6; "
                     "UPDATE records SET seq = 6 WHERE seq = -1", "seq 5 (id "),
    "tail_cut_before_last_checkpoint": ("DELETE FROM records WHERE seq > 12", "seq 13: missing"),
    "bad_checkpoint_signature": ("UPDATE checkpoints SET signature = zeroblob(64) WHERE seq = 15",
                                 "checkpoint of seq 15: bad signature"),
}


@pytest.mark.parametrize("name", sorted(SCENARIO_19))
def test_scenario_19_verify_names_the_first_bad_record(store, name):
    statement, first_bad = SCENARIO_19[name]
    sql(store, statement)
    r = ctl("audit", "verify", "--dir", store)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert first_bad in r.stdout, r.stdout
    assert r.stdout.startswith(os.path.basename(db_file(store)))
    # The id named is the record's at that seq
    if "(id " in first_bad:
        seq = int(re.search(r"seq (\d+)", first_bad).group(1))
        ids = sql(store, f"SELECT id FROM records WHERE seq = {seq}").strip()
        assert ids in r.stdout


def test_scenario_19_a_rewritten_chain_is_caught_by_the_checkpoint(store):
    # Someone who edits a record and recomputes every chain value after it
    # (no key is needed for SHA-256) still cannot sign a checkpoint
    sql(store, "UPDATE records SET chain = zeroblob(32) WHERE seq >= 12")
    r = ctl("audit", "verify", "--dir", store)
    assert r.returncode == 1 and "seq 12 (id " in r.stdout


def test_verify_from_a_date_and_its_errors(store, tmp_path):
    today = os.path.basename(db_file(store))[6:16]
    assert ctl("audit", "verify", "--dir", store, "--from", today).returncode == 0
    r = ctl("audit", "verify", "--dir", store, "--from", "2999-01-01")
    assert r.returncode == 0 and "no records" in r.stdout
    assert ctl("audit", "verify", "--dir", store, "--from", "yesterday").returncode == 64
    # No public key: cannot check, exit 2
    r = ctl("audit", "verify", "--dir", store, "--public-key", tmp_path / "none.pem")
    assert r.returncode == 2 and "public key" in r.stderr
    # Another key: every signature is bad
    other = tmp_path / "other"
    other.mkdir()
    ctl("audit", "rotate-key", "--dir", other)
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", other / "k.pem"], check=True)
    subprocess.run(["openssl", "pkey", "-in", other / "k.pem", "-pubout", "-out", other / "k.pub"],
                   check=True)
    r = ctl("audit", "verify", "--dir", store, "--public-key", other / "k.pub")
    assert r.returncode == 1 and "bad signature" in r.stdout
    # No store there: exit 2
    r = ctl("audit", "verify", "--dir", tmp_path / "nowhere", "--public-key", other / "k.pub")
    assert r.returncode == 2 and "cannot verify" in r.stderr


# --- scenario 20 ---------------------------------------------------------------------

def test_scenario_20_a_flipped_bit_fails_that_record_cleanly(store):
    sql(store, "UPDATE records SET response = CAST(substr(response, 1, 30) || "
               "(CASE WHEN substr(response, 31, 1) = x'41' THEN x'40' ELSE x'41' END) || "
               "substr(response, 32) AS BLOB) WHERE seq = 9")
    r = ctl("audit", "query", "--dir", store, "--decrypt")
    assert r.returncode == 1
    assert "1 of 20 records could not be decrypted" in r.stderr
    assert r.stdout.count("authentication failed") == 1
    for i in range(20):
        assert (f"secret prompt {i}" in r.stdout) == (i != 8), i
    found = rows_any(ctl("audit", "query", "--dir", store, "--decrypt", "--json"))
    bad = [row for row in found if "decrypt_error" in row]
    assert [row["seq"] for row in bad] == [9] and "prompt" not in bad[0]
    assert sum("prompt" in row for row in found) == 19
    # The verifier names it too
    r = ctl("audit", "verify", "--dir", store)
    assert r.returncode == 1 and "seq 9 (id " in r.stdout


def rows_any(result):
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_scenario_20_after_rotation_old_and_new_records_decrypt(store, fixture_bin):
    first_key = (store / "keys").read_text().split()[0]
    r = ctl("audit", "rotate-key", "--dir", store)
    assert r.returncode == 0, r.stderr
    new_key = r.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,32}", new_key) and new_key != first_key
    assert stat.S_IMODE(os.stat(store / "keys").st_mode) == 0o600
    # The store reopened goes on: seq and chain continue under the new key
    assert write(fixture_bin, store, 10, first=20) == 30
    # (query is in time order; the second write's times overlap the first's)
    found = sorted(rows(ctl("audit", "query", "--dir", store, "--decrypt", "--json")),
                   key=lambda row: row["seq"])
    assert [row["seq"] for row in found] == list(range(1, 31))
    assert {row["enc_key_id"] for row in found[:20]} == {first_key}
    assert {row["enc_key_id"] for row in found[20:]} == {new_key}
    for i, row in enumerate(found):
        assert f"secret prompt {i}\"" in row["prompt"], row
    assert ctl("audit", "verify", "--dir", store).returncode == 0
    # Without the old key, the old records fail cleanly, the new decrypt
    lines = (store / "keys").read_text().splitlines()
    (store / "keys.new-only").write_text(lines[-1] + "\n")
    r = ctl("audit", "query", "--dir", store, "--decrypt", "--json",
            "--key-file", store / "keys.new-only")
    assert r.returncode == 1 and "20 of 30 records could not be decrypted" in r.stderr
    found = sorted(rows_any(r), key=lambda row: row["seq"])
    assert all("unknown key id" in row["decrypt_error"] for row in found[:20])
    assert all("prompt" in row for row in found[20:])


# --- export ---------------------------------------------------------------------------

def _get(doc, dotted):
    for part in (dotted.split(".", 1) if dotted.startswith("@") else dotted.split(".")):
        doc = doc[part]
    return doc


def test_export_ndjson_with_ecs_names(store):
    r = ctl("audit", "export", "--format", "ndjson", "--dir", store)
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) == 20 and r.stdout.endswith("\n")
    for doc in docs:
        for field in ECS_FIELDS:
            assert _get(doc, field) is not None, field
        assert "prompt" not in doc["gen_ai"] and "completion" not in doc["gen_ai"]
    first = docs[0]
    assert first["event"]["outcome"] == "success"
    assert first["event"]["duration"] == 120000 * 1000
    assert first["gen_ai"]["request"]["model"] == "deepseek-v4-pro"
    assert first["gen_ai"]["response"]["model"] == "deepseek-reasoner"
    assert first["organization"]["id"] == "t0" and first["user"]["id"] == "key-dev"
    assert first["@timestamp"].endswith("Z")
    assert docs[4]["event"]["outcome"] == "failure"
    assert docs[4]["http"]["response"]["status_code"] == 429
    assert docs[4]["error"]["code"] == "rate_limit_exceeded"


def test_export_decrypted_and_filtered(store):
    r = ctl("audit", "export", "--dir", store, "--decrypt", "--tenant", "t1")
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) == 10
    assert all("secret prompt" in doc["gen_ai"]["prompt"] for doc in docs)
    assert all(doc["organization"]["id"] == "t1" for doc in docs)


def test_export_refuses_other_formats(store):
    r = ctl("audit", "export", "--format", "csv", "--dir", store)
    assert r.returncode == 64 and "ndjson" in r.stderr


# --- rotate-key and usage ---------------------------------------------------------------

def test_rotate_key_makes_and_extends_the_key_file(tmp_path):
    keys = tmp_path / "k" / "keys"
    keys.parent.mkdir()
    first = ctl("audit", "rotate-key", "--key-file", keys)
    second = ctl("audit", "rotate-key", env={"SEEKMESH_AUDIT_KEY_FILE": str(keys)})
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr)
    lines = keys.read_text().splitlines()
    assert [line.split()[0] for line in lines] == [first.stdout.strip(), second.stdout.strip()]
    assert all(re.fullmatch(r"\S+ [0-9a-f]{64}", line) for line in lines)
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o600
    r = ctl("--json", "audit", "rotate-key", "--key-file", keys)
    assert json.loads(r.stdout)["key_file"] == str(keys)
    keys.write_text("broken line\n")
    r = ctl("audit", "rotate-key", "--key-file", keys)
    assert r.returncode == 2 and "line 1" in r.stderr


@pytest.mark.parametrize("args", [
    ["audit"],
    ["audit", "frobnicate"],
    ["audit", "query", "--since", "yesterday"],
    ["audit", "query", "--since", "2026-02-30"],
    ["audit", "query", "--status", "abc"],
    ["audit", "query", "--limit", "0"],
    ["audit", "query", "extra"],
    ["audit", "verify", "--from", "2026-5-1"],
    ["audit", "export", "--format", "xml"],
    ["audit", "rotate-key", "--frobnicate"],
])
def test_usage_errors_exit_64(args):
    r = ctl(*args)
    assert r.returncode == 64, (args, r.stdout, r.stderr)
    assert r.stderr.startswith("seekmeshctl: ")


def test_an_unreadable_store_exits_2(tmp_path):
    r = ctl("audit", "query", "--dir", tmp_path / "nowhere")
    assert r.returncode == 2 and "cannot read the audit store" in r.stderr


# --- checkpoints on a store the service wrote (issue 11) ------------------------------

FAKETIME_LIB = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)
DAYS = ("2026-03-01", "2026-03-02", "2026-03-03")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AuditService:
    """seekmesh-audit on a store directory, started with its wall clock at a
    chosen time (libfaketime, LD_PRELOAD; the clock runs from there, its
    monotonic clock with it, and never jumps while the process runs), fed
    records by `seekmesh-audit bench` as an ingress would send them."""

    def __init__(self, tmp, store, checkpoint_ms=3600000):
        self.tmp, self.store = Path(tmp), Path(store)
        keys = self.tmp / "curve"
        if not keys.exists():
            subprocess.run([str(CTL), "curve", "keygen", "--dir", str(keys)], check=True,
                           capture_output=True, timeout=30)
        port, self.admin = _free_port(), _free_port()
        self.config = self.tmp / ("audit-%d.json" % port)
        self.config.write_text(json.dumps({
            "mesh": {"curve_dir": str(keys)},
            "audit": {"listen": "tcp://127.0.0.1:%d" % port,
                      "admin_listen": "127.0.0.1:%d" % self.admin,
                      "dir": str(self.store), "checkpoint_ms": checkpoint_ms}}))
        self.log_path = self.tmp / ("audit-%d.log" % port)
        self.proc = None

    def _popen(self, clock):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEEKMESH_")}
        env.update({"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": "@" + clock})
        # an ASan build's runtime would insist on coming before libfaketime
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"),
                                                     "verify_asan_link_order=0"]))
        log = open(self.log_path, "a")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(BIN / "seekmesh-audit"), "-c", str(self.config)],
                                     stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    def start(self, clock):
        """Starts it at clock ("2026-03-01 12:00:00") and waits until it is ready."""
        self._popen(clock)
        deadline = time.monotonic() + 20
        while True:
            assert self.proc.poll() is None, "seekmesh-audit exited %s:\n%s" % (
                self.proc.returncode, self.log())
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.admin,
                                            timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            assert time.monotonic() < deadline, "seekmesh-audit not ready:\n" + self.log()
            time.sleep(0.05)

    def refused(self, clock):
        """Starts it and expects it to refuse to run: its exit status and log."""
        self._popen(clock)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError("seekmesh-audit runs on this store:\n" + self.log())
        assert "Sanitizer" not in self.log(), self.log()
        return rc, self.log()

    def send(self, count):
        """count records, acknowledged (committed and synced) before it returns"""
        r = subprocess.run([str(BIN / "seekmesh-audit"), "bench", "-c", str(self.config),
                            "-n", str(count), "-s", "300"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0 and ("acked up to seq %d " % count) in r.stdout, (r.stdout, r.stderr)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=30) == 0, self.log()
        assert "Sanitizer" not in self.log() and "runtime error" not in self.log(), self.log()

    def crash(self):
        self.proc.kill()
        self.proc.wait(timeout=30)

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def checkpoints(store, day):
    """(seq, prev_seq, time) of a day file's checkpoints"""
    out = subprocess.run(["sqlite3", str(store / ("audit-%s.db" % day)),
                          "SELECT seq, prev_seq, time_ms FROM checkpoints ORDER BY seq"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return [tuple(int(x) for x in line.split("|")) for line in out.split()]


def day_sql(store, day, statement):
    r = subprocess.run(["sqlite3", str(store / ("audit-%s.db" % day)), statement],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module")
def service_store(tmp_path_factory):
    """Thirty records in three day files, as the service wrote them:
    2026-03-01  seq 1-15   checkpoints 5, 10 (at stops), 15 (the day closed
                           by the running service when its clock passed
                           midnight)
    2026-03-02  seq 16-25  checkpoints 20 (at a stop), 25 (signed when the
                           service started again after a crash had left
                           21-25 unsigned)
    2026-03-03  seq 26-30  checkpoint 30 (at a stop)"""
    assert FAKETIME_LIB, "libfaketime is not installed (scripts/deps --test installs it)"
    tmp = tmp_path_factory.mktemp("service")
    store = tmp / "store"
    service = AuditService(tmp, store)
    service.start("2026-03-01 12:00:00").send(5)
    service.stop()
    service.start("2026-03-01 13:00:00").send(5)
    service.stop()
    # Started 6 s before midnight: records 11-15 on the first day, then, once
    # its clock has passed midnight, five more: it closes the first day with a
    # checkpoint of seq 15 before it writes them into the second day's file
    service.start("2026-03-01 23:59:54").send(5)
    assert not (store / ("audit-%s.db" % DAYS[1])).exists(), \
        "the service took 6 s to start and store five records:\n" + service.log()
    time.sleep(max(0.0, service.started + 7.0 - time.monotonic()))
    service.send(5)
    service.stop()
    service.start("2026-03-02 12:00:00").send(5)
    service.crash()
    service.start("2026-03-03 12:00:00")
    assert "records 21 to 25 were signed by no checkpoint (the last writer stopped without " \
           "signing: a crash?); signed now" in service.log()
    service.send(5)
    service.stop()
    assert sorted(os.path.basename(p) for p in glob.glob(str(store / "audit-*.db"))) == \
        ["audit-%s.db" % day for day in DAYS]
    first, second, third = (checkpoints(store, day) for day in DAYS)
    assert [(seq, prev) for seq, prev, _ in first] == [(5, 0), (10, 5), (15, 10)]
    assert [(seq, prev) for seq, prev, _ in second] == [(20, 15), (25, 20)]
    assert [(seq, prev) for seq, prev, _ in third] == [(30, 25)]
    # the first day's last checkpoint was signed after its midnight: by the
    # running service closing the day, not at a stop
    assert first[-1][2] >= 1772409600000, first      # 2026-03-02T00:00:00Z
    return store


@pytest.fixture
def served(service_store, tmp_path):
    """A copy of the service's store, to tamper with"""
    copy = tmp_path / "audit"
    shutil.copytree(service_store, copy)
    return copy


def verify(store, *args):
    return ctl("audit", "verify", "--dir", store, *args)


def test_verify_the_store_the_service_wrote(served):
    r = verify(served)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout == "ok: 30 records, seq 1 to 30, 3 day files, 6 checkpoints\n"
    r = ctl("--json", "audit", "verify", "--dir", served)
    assert json.loads(r.stdout) == {"ok": True, "notes": [],
                                    "report": "ok: 30 records, seq 1 to 30, 3 day files, "
                                              "6 checkpoints"}


CHECKPOINT_TAMPERS = {
    # (a) one checkpoint row deleted in the middle
    "middle_checkpoint_deleted": (
        [(0, "DELETE FROM checkpoints WHERE seq = 10")],
        "audit-2026-03-01.db checkpoint of seq 15: the checkpoint it follows, of seq 10, is "
        "missing (deleted)"),
    "a_day_closing_checkpoint_deleted": (
        [(0, "DELETE FROM checkpoints WHERE seq = 15")],
        "audit-2026-03-01.db seq 11 to 15: signed by no checkpoint: a day file ends with a "
        "checkpoint of its last record, and this one's is missing (deleted)"),
    # (b) the last checkpoints deleted
    "last_checkpoint_deleted": (
        [(2, "DELETE FROM checkpoints WHERE seq = 30")],
        "audit-2026-03-03.db seq 26 to 30: signed by no checkpoint, and no writer is running: "
        "the checkpoints after seq 25 were deleted (the service signs its records every "
        "audit.checkpoint_ms, when it stops, and when it starts again after a crash)"),
    "last_checkpoints_of_two_days_deleted": (
        [(1, "DELETE FROM checkpoints WHERE seq = 25"), (2, "DELETE FROM checkpoints")],
        "audit-2026-03-02.db seq 21 to 25: signed by no checkpoint: a day file ends with a "
        "checkpoint of its last record, and this one's is missing (deleted)"),
    # (c) two checkpoints swapped, or moved to another day file
    "two_checkpoints_swapped": (
        [(0, "UPDATE checkpoints SET seq = -1 WHERE seq = 5; "
             "UPDATE checkpoints SET seq = 5 WHERE seq = 10; "
             "UPDATE checkpoints SET seq = 10 WHERE seq = -1")],
        "audit-2026-03-01.db checkpoint of seq 5: bad signature"),
    "checkpoint_moved_to_another_day": (
        [(0, "ATTACH 'audit-2026-03-02.db' AS two; "
             "INSERT INTO checkpoints SELECT * FROM two.checkpoints WHERE seq = 20; "
             "DELETE FROM two.checkpoints WHERE seq = 20")],
        "audit-2026-03-01.db checkpoint of seq 20: seq 20 is a record of audit-2026-03-02.db: "
        "the checkpoint was moved (a checkpoint is kept with the record it signs)"),
    "two_days_closing_checkpoints_swapped": (
        [(0, "ATTACH 'audit-2026-03-02.db' AS two; "
             "CREATE TEMP TABLE kept AS SELECT * FROM checkpoints WHERE seq = 15; "
             "DELETE FROM checkpoints WHERE seq = 15; "
             "INSERT INTO checkpoints SELECT * FROM two.checkpoints WHERE seq = 25; "
             "DELETE FROM two.checkpoints WHERE seq = 25; "
             "INSERT INTO two.checkpoints SELECT * FROM kept")],
        "audit-2026-03-02.db checkpoint of seq 15: seq 15 is a record of audit-2026-03-01.db: "
        "the checkpoint was moved (a checkpoint is kept with the record it signs)"),
    "checkpoint_names_another_before_it": (
        [(1, "UPDATE checkpoints SET prev_seq = 10 WHERE seq = 20")],
        "audit-2026-03-02.db checkpoint of seq 20: bad signature"),
}


@pytest.mark.parametrize("name", sorted(CHECKPOINT_TAMPERS))
def test_verify_names_a_missing_swapped_or_moved_checkpoint(served, name):
    edits, wrong = CHECKPOINT_TAMPERS[name]
    for day, statement in edits:
        # relative ATTACH paths: run in the store's directory
        r = subprocess.run(["sqlite3", "audit-%s.db" % DAYS[day], statement], cwd=served,
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    r = verify(served)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout == wrong + "\n", r.stdout


def test_verify_finds_a_middle_day_file_deleted_and_the_service_refuses_it(served, tmp_path):
    # (d) a whole day file deleted between two others
    os.unlink(served / "audit-2026-03-02.db")
    r = verify(served)
    assert r.returncode == 1
    assert r.stdout == ("audit-2026-03-03.db seq 16: missing (this file starts at seq 26; a day "
                        "file or the end of the one before was deleted)\n")
    # The service does not append to the broken chain: it does not start,
    # and says which file breaks it and what to do
    rc, log = AuditService(tmp_path, served).refused("2026-03-03 18:00:00")
    assert rc != 0
    assert ("audit-2026-03-03.db: it does not start where audit-2026-03-01.db ends (after seq "
            "15): a day file between them is missing, or one of them was changed") in log, log
    assert "does not append to a broken chain: run seekmeshctl audit verify" in log
    # nothing was added to the newest file
    assert [c[:2] for c in checkpoints(served, DAYS[2])] == [(30, 25)]
    assert day_sql(served, DAYS[2], "SELECT count(*), max(seq) FROM records").strip() == "5|30"
    assert verify(served).stdout.startswith("audit-2026-03-03.db seq 16: missing")


def test_verify_accepts_the_oldest_day_deleted_by_retention_and_says_so(served, tmp_path):
    os.unlink(served / "audit-2026-03-01.db")
    r = verify(served)
    assert r.returncode == 0, r.stdout
    assert r.stdout == (
        "ok: 15 records, seq 16 to 30, 2 day files, 3 checkpoints\n"
        "note: the first checkpoint (of seq 20, audit-2026-03-02.db) follows that of seq 15, in "
        "a day file no longer here (deleted by retention, audit.retention_days): that link is "
        "not checked\n")
    r = ctl("--json", "audit", "verify", "--dir", served)
    assert json.loads(r.stdout)["notes"][0].startswith("note: the first checkpoint (of seq 20")
    # A checkpoint deleted after the boundary is still found
    day_sql(served, DAYS[1], "DELETE FROM checkpoints WHERE seq = 20")
    r = verify(served)
    assert r.returncode == 1 and r.stdout == (
        "audit-2026-03-02.db checkpoint of seq 25: the checkpoint it follows, of seq 20, is "
        "missing (deleted)\n")


def test_verify_from_a_day_notes_the_link_it_does_not_check(served):
    r = verify(served, "--from", DAYS[1])
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines() == [
        "ok: 15 records, seq 16 to 30, 2 day files, 3 checkpoints",
        "note: the first checkpoint (of seq 20, audit-2026-03-02.db) follows that of seq 15, in "
        "a day file before --from, not verified: that link is not checked"]


def test_a_store_of_the_earlier_format_is_refused_with_what_to_do(served, tmp_path):
    for day in DAYS:
        day_sql(served, day, "UPDATE meta SET value = 1 WHERE name = 'format'")
    r = verify(served)
    assert r.returncode == 2 and r.stdout == ""
    assert "audit-2026-03-01.db: a day file of format 1, from an earlier seekmesh" in r.stderr
    assert "Verify the old day files with the seekmeshctl that wrote them, then move them out " \
           "of this directory" in r.stderr
    # the records still read
    assert len(rows(ctl("audit", "query", "--dir", served, "--json"))) == 30
    rc, log = AuditService(tmp_path, served).refused("2026-03-03 18:00:00")
    assert rc != 0 and "a day file of format 1, from an earlier seekmesh" in log, log


def test_the_running_service_s_unsigned_tail(served, tmp_path):
    """Records the running service has not signed yet fail at once without
    --tail-wait, and after it when it does not sign them; checkpoints
    deleted under a running service are found at its next checkpoint."""
    service = AuditService(tmp_path, served).start("2026-03-03 13:00:00")
    try:
        service.send(5)
        r = verify(served, "--tail-wait", "0")
        assert r.returncode == 1 and r.stdout == (
            "audit-2026-03-03.db seq 31 to 35: signed by no checkpoint yet; a writer is running, "
            "which signs them within audit.checkpoint_ms (--tail-wait MS waits for it)\n")
        began = time.monotonic()
        r = verify(served, "--tail-wait", "400")
        assert time.monotonic() - began >= 0.4
        assert r.returncode == 1 and r.stdout.startswith(
            "audit-2026-03-03.db seq 31 to 35: signed by no checkpoint within 400 ms, although a "
            "writer is running: the checkpoints after seq 30 were deleted")
        # The last checkpoint deleted while it runs
        day_sql(served, DAYS[2], "DELETE FROM checkpoints WHERE seq = 30")
        r = verify(served, "--tail-wait", "300")
        assert r.returncode == 1 and "seq 26 to 35: signed by no checkpoint within 300 ms" in r.stdout
    finally:
        service.stop()
    # At its stop it signed seq 35, naming the checkpoint it had written
    assert checkpoints(served, DAYS[2])[-1][:2] == (35, 30)
    r = verify(served)
    assert r.returncode == 1 and r.stdout == (
        "audit-2026-03-03.db checkpoint of seq 35: the checkpoint it follows, of seq 30, is "
        "missing (deleted)\n")


def test_verify_waits_for_the_running_service_to_sign(served, tmp_path):
    service = AuditService(tmp_path, served, checkpoint_ms=1500).start("2026-03-03 13:00:00")
    try:
        service.send(5)
        began = time.monotonic()
        r = verify(served)                       # the default wait, 5 s
        assert r.returncode == 0, r.stdout
        assert r.stdout.startswith("ok: 35 records, seq 1 to 35, 3 day files, 7 checkpoints")
        assert time.monotonic() - began < 5
    finally:
        service.stop()
