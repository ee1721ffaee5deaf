"""The Grafana dashboard and the Prometheus alert rules only use metrics the poller exports, and
promtool accepts (and unit-tests) them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from poller import __version__
from poller.fleet.metrics import WorkerMetrics
from poller.ops.metrics import Metrics

REPO_ROOT = Path(__file__).resolve().parents[3]
DASHBOARD = REPO_ROOT / "grafana" / "dashboards" / "poller.json"
ALERTS = REPO_ROOT / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO_ROOT / "prometheus" / "alerts_test.yml"
ALERT_NAMES = {
    "PollerDown",
    "PollerStalled",
    "LagHigh",
    "ErrorRateHigh",
    "DeadLettersGrowing",
    "EntityStuck",
}
# Series Prometheus itself attaches to every scrape target.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
_POLLER_NAME = re.compile(r"\bpoller_[A-Za-z0-9_]+")
# a metric name right before a label matcher: name{...}
_SELECTOR_NAME = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{")
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def exported_names() -> set[str]:
    """Every sample name the poller's registry can expose, from its metric families' types,
    so a labelled metric without children yet still counts."""
    names: set[str] = set()
    for registry in (Metrics().registry, WorkerMetrics("w").registry):  # a worker's own too
        for family in registry.collect():
            names.update(family.name + s for s in _SUFFIXES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """Metric names used in a PromQL expression: poller_* words and selector names."""
    names = set(_POLLER_NAME.findall(expr))
    names.update(n for n in _SELECTOR_NAME.findall(expr) if n not in _PROMQL_WORDS)
    return names


def load_dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Panels, including those nested in collapsed rows."""
    for panel in panels:
        if panel.get("type") == "row":
            yield from iter_panels(panel.get("panels", []))
        else:
            yield panel


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every query of the dashboard."""
    return [
        (panel["title"], target["refId"], target["expr"])
        for panel in iter_panels(dashboard["panels"])
        for target in panel["targets"]
    ]


_REGEX_SPECIAL = re.compile(r"([$^*+?.()|\\{}\[\]])")


def grafana_escape(value: str) -> str:
    """A variable value as Grafana puts it into a Prometheus regex matcher: regex
    metacharacters escaped, the backslash doubled for the PromQL string literal."""
    return _REGEX_SPECIAL.sub(r"\\\\\1", value)


def substitute(expr: str, tenant: str, entities: list[str], rate_interval: str) -> str:
    """What Grafana sends: multi-value variables as a regex alternation, like `All`."""
    alternation = "(" + "|".join(grafana_escape(e) for e in entities) + ")"
    return (
        expr.replace("$__rate_interval", rate_interval)
        .replace("$tenant", grafana_escape(tenant))
        .replace("$entity", alternation)
    )


def promtool() -> str:
    path = shutil.which("promtool") or (
        "/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None
    )
    if path is None:
        pytest.fail(
            "promtool is not installed (apt-get install prometheus, or scripts/services up)"
        )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


# --------------------------------------------------------------------------- dashboard


def test_dashboard_basics() -> None:
    d = load_dashboard()
    assert d["uid"] == "poller"
    assert 36 <= d["schemaVersion"] <= 41
    panels = list(iter_panels(d["panels"]))
    assert len(panels) >= 10
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for p in panels:
        assert p["datasource"] == {"type": "prometheus", "uid": "prometheus"}, p["title"]
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]), p["title"]


def test_dashboard_variables() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert set(variables) == {"tenant", "entity"}
    for name, v in variables.items():
        assert v["type"] == "query"
        assert v["datasource"]["uid"] == "prometheus"
        assert v["multi"] is True and v["includeAll"] is True, name
        assert v["definition"].startswith("label_values("), name
        assert v["definition"].rstrip().endswith(f", {name})"), name
        assert v["query"]["query"] == v["definition"]
        (metric,) = metric_names(v["definition"])
        assert metric in exported_names()
    assert "$tenant" in variables["entity"]["definition"]


def test_every_panel_has_queries_that_use_the_variables() -> None:
    from poller.ops.dashboard_panels import WORKER_WIDE

    for panel in iter_panels(load_dashboard()["panels"]):
        assert panel["targets"], f"panel {panel['title']!r} has no targets"
        for t in panel["targets"]:
            expr = t.get("expr", "")
            assert expr.strip(), f"panel {panel['title']!r} target {t.get('refId')} has no expr"
            if metric_names(expr) <= WORKER_WIDE:  # a worker's own series carry no tenant
                continue
            assert 'tenant=~"$tenant"' in expr, f"{panel['title']!r}: not filtered by tenant"


def test_dashboard_is_generated_and_in_rows() -> None:
    from poller.ops.dashboard import render

    assert DASHBOARD.read_text(encoding="utf-8") == render(), (
        "grafana/dashboards/poller.json is stale: run `make docs-reference`"
    )
    panels = load_dashboard()["panels"]
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Overview", "Entities", "Kafka", "Source horizon", "Fleet"]
    placed = sorted((p["gridPos"]["y"], p["gridPos"]["x"]) for p in panels)
    assert len(placed) == len(set(placed)), "two panels in one place"
    for p in panels:
        assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]


def test_required_panels_present() -> None:
    exprs = " ".join(e for _t, _r, e in panel_queries(load_dashboard()))
    for needle in (
        "rate(poller_rows_published_total",
        "poller_watermark_lag_seconds",
        "histogram_quantile(0.5, sum by (le, phase) (rate(poller_batch_phase_seconds_bucket",
        "histogram_quantile(0.95,",
        "histogram_quantile(0.99,",
        "poller_errors_total",
        "poller_retries_total",
        "poller_rows_dead_lettered_total",
        "poller_transactions_total",
        "time() - max by (tenant, entity) (poller_last_success_timestamp_seconds",
        "poller_producer_queue_messages",
        "poller_producer_delivery_latency_seconds",
        "poller_database_up",
        "poller_kafka_up",
        # the series the issue found missing: holdback, stuck entities, drift, repairs, takeover
        "poller_horizon_holdback_seconds",
        "poller_horizon_active",
        "poller_entity_consecutive_failures",
        "poller_schema_drift",
        "poller_repair_messages_total",
        "poller_worker_takeover_seconds_bucket",
        "poller_worker_rebalances_total",
    ):
        assert needle in exprs, f"no panel query contains {needle!r}"


def test_dashboard_metrics_exist() -> None:
    exported = exported_names()
    assert "poller_rows_published_total" in exported  # the helper itself works
    assert "poller_batch_phase_seconds_bucket" in exported
    assert "poller_nonexistent_total" not in exported
    for title, ref, expr in panel_queries(load_dashboard()):
        unknown = metric_names(expr) - exported
        assert not unknown, f"panel {title!r} query {ref} uses unknown metrics {unknown}"


def test_substitute() -> None:
    expr = 'rate(x{tenant=~"$tenant", entity=~"$entity"}[$__rate_interval])'
    got = substitute(expr, "acme.corp", ["customers", "receipt_lines"], "30s")
    assert got == 'rate(x{tenant=~"acme\\\\.corp", entity=~"(customers|receipt_lines)"}[30s])'


def test_metric_name_extraction_can_fail() -> None:
    assert metric_names('rate(poller_foo_total{tenant=~"$t"}[5m]) / up{job="x"}') == {
        "poller_foo_total",
        "up",
    }
    assert metric_names("sum by (le) (x)") == set()


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel query (variables substituted) as a recording rule."""
    queries = panel_queries(load_dashboard())
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": substitute(expr, "acme-corp", ["customers", "receipts"], "1m"),
        }
        for i, (_t, _r, expr) in enumerate(queries)
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = run_promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout

    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {"name": "x", "rules": [{"record": "x:y", "expr": "sum by (le (rate(x[1m]))"}]}
                ]
            }
        )
    )
    assert run_promtool("check", "rules", str(bad)).returncode != 0


# ------------------------------------------------------------------------------ alerts


def load_alerts() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_alert_rules_present() -> None:
    rules = load_alerts()
    assert {r["alert"] for r in rules} == ALERT_NAMES
    exported = exported_names() | SCRAPE_SERIES
    for r in rules:
        assert r["labels"]["severity"] in {"critical", "warning"}
        assert r["annotations"]["summary"] and r["annotations"]["description"]
        unknown = metric_names(r["expr"]) - exported
        assert not unknown, f"alert {r['alert']} uses unknown metrics {unknown}"
    down = next(r for r in rules if r["alert"] == "PollerDown")
    assert 'up{job="poller"} == 0' in down["expr"]


def test_alerts_test_covers_every_alert() -> None:
    data = yaml.safe_load(ALERTS_TEST.read_text(encoding="utf-8"))
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in data["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == ALERT_NAMES, f"not shown firing: {ALERT_NAMES - firing}"
    assert quiet == ALERT_NAMES, f"not shown quiet: {ALERT_NAMES - quiet}"


def test_promtool_check_rules() -> None:
    proc = run_promtool("check", "rules", str(ALERTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in proc.stdout


def test_promtool_test_rules() -> None:
    proc = run_promtool("test", "rules", str(ALERTS_TEST))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_test_rules_can_fail(tmp_path: Path) -> None:
    """The same tests against rules that never fire must fail."""
    (tmp_path / "alerts.yml").write_text(
        ALERTS.read_text(encoding="utf-8").replace("for: 2m", "for: 2h")
    )
    (tmp_path / "alerts_test.yml").write_text(ALERTS_TEST.read_text(encoding="utf-8"))
    proc = run_promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert proc.returncode != 0
    assert "PollerDown" in proc.stdout + proc.stderr


def test_prometheus_config_loads_alerts() -> None:
    proc = run_promtool("check", "config", str(REPO_ROOT / "prometheus" / "prometheus.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in proc.stdout


# ------------------------------------------------------------------------------ metrics


def sample_values(m: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in m.registry.collect()
        for s in family.samples
    }


def test_init_labels_creates_zero_series() -> None:
    m = Metrics()
    m.init_labels("acme", ["customers", "receipts"], started_at=1000.0)
    values = sample_values(m)
    for entity in ("customers", "receipts"):
        te = {("tenant", "acme"), ("entity", entity)}
        for name in (
            "poller_rows_read_total",
            "poller_rows_published_total",
            "poller_rows_dead_lettered_total",
            "poller_batches_total",
            "poller_retries_total",
        ):
            assert values[(name, frozenset(te))] == 0, name
        assert values[("poller_last_success_timestamp_seconds", frozenset(te))] == 1000.0
        for phase in ("fetch", "encode", "commit"):
            key = ("poller_batch_phase_seconds_count", frozenset(te | {("phase", phase)}))
            assert values[key] == 0
    for outcome in ("committed", "aborted"):
        labels = frozenset({("tenant", "acme"), ("outcome", outcome)})
        assert values[("poller_transactions_total", labels)] == 0
    tenant_wide = frozenset({("tenant", "acme"), ("entity", ""), ("kind", "SourceError")})
    assert values[("poller_errors_total", tenant_wide)] == 0
    assert values[("poller_build_info", frozenset({("version", __version__)}))] == 1
    # Every series name is one the dashboard check accepts.
    assert {name for name, _labels in values} <= exported_names()


def test_on_stats() -> None:
    m = Metrics()
    stats = {
        "msg_cnt": 42,
        "brokers": {
            "127.0.0.1:9092/1": {
                "int_latency": {"p99": 2500, "avg": 1000},
                "rtt": {"p99": 8000, "avg": 3000},
            },
            "127.0.0.1:9092/bootstrap": {"int_latency": {}, "rtt": {"p99": 0, "avg": 0}},
        },
    }
    m.on_stats("acme", json.dumps(stats))
    values = sample_values(m)
    assert values[("poller_producer_queue_messages", frozenset({("tenant", "acme")}))] == 42
    lat = {
        dict(labels)["stat"]: v
        for (name, labels), v in values.items()
        if name == "poller_producer_delivery_latency_seconds"
    }
    assert lat == {
        "int_latency_p99": 0.0025,
        "int_latency_avg": 0.001,
        "rtt_p99": 0.008,
        "rtt_avg": 0.003,
    }
    m.on_stats("acme", "not json")  # ignored, values kept
    assert sample_values(m) == values
