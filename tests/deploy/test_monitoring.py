"""The alert rules and the Grafana dashboard (deploy/helm/seekmesh/files).

The rules pass `promtool check rules` and their unit tests
(deploy/prometheus/seekmesh-alerts.test.yml: every alert fires in one of
them); the dashboard's queries parse as PromQL (promtool again); and every
metric that a rule or a panel names is one the services really export: a
mesh of real processes is started, sent traffic that makes every lazily
created series appear (a chat, a stream, a refusal, upstream failures, a
fallback, a cache miss and hit, a word-filter block), and every service's
/metrics is read."""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from meshlib import Mesh  # noqa: E402

FILES = REPO / "deploy" / "helm" / "seekmesh" / "files"
RULES = FILES / "seekmesh-alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "seekmesh-alerts.test.yml"
DASHBOARD = FILES / "seekmesh-dashboard.json"
#  Series Prometheus makes itself for every scrape target
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

PROMQL_WORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                "offset", "bool", "inf", "nan", "le"}


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\boffset\s+-?[0-9a-z]+", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[m.end():].lstrip()
        word = m.group(0)
        if rest.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def rule_exprs():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [(r.get("alert") or r.get("record"), str(r["expr"])) for g in groups for r in g["rules"]]


def dashboard_exprs():
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def test_metric_name_extraction():
    assert metric_names('sum by (le) (rate(a_bucket{code="5xx",x=~"y|z"}[5m])) / on (job) b') == {"a_bucket", "b"}
    assert metric_names("histogram_quantile(0.99, sum by (le, instance) (rate(c[1m]))) > 3") == {"c"}
    assert metric_names("absent(d) or e == 0 and f offset 5m") == {"d", "e", "f"}


def test_promtool_checks_the_rules():
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules():
    result = subprocess.run(["promtool", "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_alert_fires_in_a_unit_test():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")}
    alerts = {name for name, _ in rule_exprs()}
    assert alerts - fired == set(), "alerts no unit test makes fire: %s" % sorted(alerts - fired)


def test_the_dashboard_queries_are_promql(tmp_path):
    """Each panel's query, wrapped in a recording rule, passes promtool."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:panel_%d" % i, "expr": expr} for i, (_, expr) in enumerate(dashboard_exprs())]}]}
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_shows_what_the_issue_asks():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "seekmesh" and any(v["type"] == "datasource" for v in dash["templating"]["list"])
    exprs = " ".join(e for _, e in dashboard_exprs())
    for wanted in ("seekmesh_ingress_responses_total",           # QPS, error rate
                   "seekmesh_ingress_ttfb_seconds_bucket",       # p99
                   "by (model)", "by (key)",                     # per model, per key (tenant)
                   "seekmesh_ingress_active_requests",           # streams open
                   "seekmesh_ingress_audit_ack_seconds_bucket",  # audit lag
                   "seekmesh_ingress_audit_unacked",             # spool
                   "seekmesh_router_queue_depth",                # queue depth
                   "seekmesh_cache_lookups_total{result=\"hit\"}"):  # cache hit ratio
        assert wanted in exprs, wanted
    ratio = next(p for p in dash["panels"] if p["title"] == "Cache hit ratio")
    assert ratio["fieldConfig"]["defaults"]["unit"] == "percentunit"
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every metric name the services export, read from a running mesh after
    traffic that creates the labelled series."""
    local = json.loads((REPO / "compose" / "config" / "local.json").read_text())
    models = local["models"]
    for m in models:
        if m["name"] == "deepseek-chat":
            m["fallback"] = "deepseek-reasoner"
    mesh = Mesh(tmp_path_factory.mktemp("mesh"), {
        "mesh": {"drain_ms": 2000}, "models": models,
        "connector": {"first_byte_timeout_ms": 1500, "idle_timeout_ms": 1500}}).up()
    try:
        def chat(body):
            return mesh.chat(dict({"messages": [{"role": "user", "content": "hi"}]}, **body))
        assert chat({"model": "deepseek-chat"})[0] == 200
        stream = mesh.stream({"model": "deepseek-chat-ws", "stream": True,
                              "messages": [{"role": "user", "content": "hi"}]})
        stream.read_all()
        assert stream.content() == "Echo: hi"
        stream.close()
        assert chat({"model": "no-such-model"})[0] == 404                  # a refusal
        cached = {"model": "deepseek-chat", "messages": [{"role": "user", "content": "keep me"}]}
        verdicts = [mesh.chat(cached, headers={"x-seekmesh-cache": "ttl=60"})[1].get("x-seekmesh-cache")
                    for _ in range(2)]
        assert verdicts == ["miss", "hit"], verdicts                      # the cache's counters
        status, _ = mesh.admin_call("POST", "/admin/filters", {"word": "blorp"})
        assert status == 201, status
        deadline = time.monotonic() + 10                                   # a word filter block
        while chat({"model": "deepseek-chat", "messages": [{"role": "user", "content": "say blorp"}]})[0] == 200:
            assert time.monotonic() < deadline, "the word list never reached the router"
            time.sleep(0.05)
        for _ in range(3):                                                 # upstream failures, retries, a fallback
            chat({"model": "deepseek-chat", "mock": {"status": 503}})
        names = set()
        for service in ("ingress", "router", "connector", "cache", "audit", "mock"):
            status, text = mesh.admin_get(service, "/metrics")
            assert status == 200, service
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
        yield names
    finally:
        mesh.down()


def test_the_dashboard_names_only_exported_metrics(exported):
    missing = {}
    for title, expr in dashboard_exprs():
        for name in metric_names(expr) - exported:
            missing.setdefault(name, []).append(title)
    assert not missing, "metrics no service exports: %s" % missing


def test_the_alerts_name_only_exported_metrics(exported):
    missing = {}
    for alert, expr in rule_exprs():
        for name in metric_names(expr) - exported - SCRAPE_SERIES:
            missing.setdefault(name, []).append(alert)
    assert not missing, "metrics no service exports: %s" % missing
