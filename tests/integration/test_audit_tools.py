"""seekmeshctl audit query | verify | export | rotate-key on a store on disk.

The store is written by audit_fixture.c (compiled here against
build/libmesh.a) exactly as seekmesh-audit writes it: mesh_audit_store,
the key file made by `seekmeshctl audit rotate-key`, an Ed25519 signing key,
a checkpoint every five records.  The tools read the files directly (no
service, no admin API).  Tampering is done with the sqlite3 command line, as
someone with access to the disk would."""
import glob
import json
import os
import re
import shlex
import stat
import subprocess
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
