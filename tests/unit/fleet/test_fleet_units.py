"""The fleet's pure parts: Kafka-compatible partitioning, the checks a tenant's configuration
passes before it is stored, the worker's configuration, and merging children's metrics."""

from __future__ import annotations

import pytest
import yaml
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from poller.errors import ConfigError
from poller.fleet.metrics import WorkerMetrics, merge_exposition
from poller.fleet.settings import (
    child_config_text,
    literal_secrets,
    load_worker_config,
    parse_tenant_text,
)
from poller.fleet.tenants import murmur2, partition_for


def test_murmur2_matches_kafka() -> None:
    # The vectors of Kafka's own UtilsTest.testMurmur2.
    cases = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"a-little-bit-longer-string": -1486304829,
        b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
        b"abc": 479470107,
    }
    for data, want in cases.items():
        assert murmur2(data) == want, data


def test_partition_for_is_stable_and_spread() -> None:
    parts = [partition_for(f"tenant-{i}", 12) for i in range(1200)]
    assert parts == [partition_for(f"tenant-{i}", 12) for i in range(1200)]
    counts = [parts.count(p) for p in range(12)]
    assert min(counts) > 60, counts  # ~100 each
    assert partition_for("ünïcode", 7) == (murmur2("ünïcode".encode()) & 0x7FFFFFFF) % 7


TENANT = {
    "tenant": "acme",
    "source": {"url": "postgresql+psycopg2://crm:${CRM_PW}@db:5432/crm"},
    "kafka": {"format": "single_object", "options": {"sasl.password": "${file:/run/kafka}"}},
    "entities": {
        "customers": {
            "table": "customers",
            "key": "id",
            "fields": {"local_id": "id"},
            "batching": {"mode": "id", "column": "id"},
        }
    },
}


def test_a_tenant_is_checked_without_its_secrets() -> None:
    # Neither CRM_PW nor /run/kafka exists here: references are checked, not resolved.
    raw, tenant = parse_tenant_text(yaml.safe_dump(TENANT), "t.yaml", strict=True)
    assert tenant == "acme" and raw["source"]["url"].endswith("${CRM_PW}@db:5432/crm")


def test_literal_secrets_are_refused_with_their_path() -> None:
    leaky = yaml.safe_load(yaml.safe_dump(TENANT))
    leaky["source"]["url"] = "postgresql+psycopg2://crm:hunter2@db:5432/crm"
    leaky["kafka"]["options"]["sasl.password"] = "hunter2"
    problems = literal_secrets(leaky)
    assert [p.split(":")[0] for p in problems] == ["source.url", "kafka.options.sasl.password"]
    with pytest.raises(ConfigError) as err:
        parse_tenant_text(yaml.safe_dump(leaky), "t.yaml", strict=True)
    assert "hunter2" not in str(err.value)
    # Structural problems come together with the secret ones.
    del leaky["entities"]
    with pytest.raises(ConfigError) as err:
        parse_tenant_text(yaml.safe_dump(leaky), "t.yaml", strict=True)
    assert len(err.value.problems) == 3, err.value.problems
    assert literal_secrets(TENANT) == []


def test_child_config_keeps_references_and_moves_metrics_to_loopback() -> None:
    text = child_config_text(TENANT, 41234)
    out = yaml.safe_load(text)
    assert out["metrics"] == {"enabled": True, "host": "127.0.0.1", "port": 41234}
    assert out["source"] == TENANT["source"] and "${CRM_PW}" in text


def test_worker_config_overrides_and_problems(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KPW", "s3cret")
    path = tmp_path / "w.yaml"
    path.write_text(
        "kafka: {bootstrap_servers: a:1, topic_prefix: p, options: {sasl.password: '${KPW}'}}\n"
        "max_tenants: 3\n"
    )
    cfg = load_worker_config(str(path), {"kafka.bootstrap_servers": "b:2", "group": None})
    assert cfg.kafka.bootstrap_servers == "b:2" and cfg.group == "poller-workers"
    assert cfg.kafka.client_options()["sasl.password"] == "s3cret"
    assert cfg.tenants_topic_name() == "p.tenants" and cfg.max_tenants == 3
    assert load_worker_config(None, {"kafka.bootstrap_servers": "h:9"}).metrics.port == 9400
    path.write_text(
        "max_tenants: 0\nprotocol: eager\nkafka: {options: {sasl.username: '${NOPE}'}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_worker_config(str(path), {})
    assert len(err.value.problems) == 3, err.value.problems


def test_worker_options_its_clients_would_drop_are_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "w.yaml"
    path.write_text(
        "kafka: {options: {linger.ms: 5, sasl.username: w, security.protocol: SASL_SSL}}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_worker_config(str(path), {})
    (problem,) = err.value.problems
    assert problem.startswith("kafka.options.linger.ms: not used by the worker, whose clients ")
    path.write_text("kafka: {options: {sasl.username: w, security.protocol: SASL_SSL}}\n")
    assert load_worker_config(str(path), {}).kafka.options["sasl.username"] == "w"


def test_instance_id_defaults_to_the_pod_name_only_in_kubernetes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HOSTNAME", "poller-worker-2")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert load_worker_config(None, {}).member_instance_id() is None
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    assert load_worker_config(None, {}).member_instance_id() == "poller-worker-2"
    assert load_worker_config(None, {"instance_id": "w7"}).member_instance_id() == "w7"


def _child_text(tenant: str) -> str:
    r = CollectorRegistry()
    c = Counter("poller_rows_read", "Rows read", ("tenant", "entity"), registry=r)
    h = Histogram("poller_batch_phase_seconds", "Phase", ("tenant",), registry=r)
    c.labels(tenant, "customers").inc(5)
    h.labels(tenant).observe(0.2)
    from prometheus_client import Info

    Info("poller_build", "Build", registry=r).info({"version": "1"})
    return generate_latest(r).decode()


def test_children_metrics_merge_into_one_valid_exposition() -> None:
    worker = WorkerMetrics("w1")
    own = generate_latest(worker.registry).decode()
    merged = own + merge_exposition([_child_text("a"), _child_text("b"), ""], {"poller_build_info"})
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    rows = [s for s in families["poller_rows_read"].samples if s.name.endswith("_total")]
    assert {s.labels["tenant"] for s in rows} == {"a", "b"}
    assert (
        sum(1 for line in merged.splitlines() if line == "# TYPE poller_rows_read_total counter")
        == 1
    )
    assert len(families["poller_build_info"].samples) == 1  # the worker's own only
    assert {s.labels["worker"] for s in families["poller_worker_partitions"].samples} == {"w1"}
    buckets = [
        s for s in families["poller_batch_phase_seconds"].samples if s.name.endswith("_bucket")
    ]
    assert {s.labels["tenant"] for s in buckets} == {"a", "b"}


def test_every_literal_secret_is_refused_by_tenants_put() -> None:
    """Issue 17: a ?password= in the URL, sslpassword=, a registry basic_auth password, a
    registry bearer token and user:password in the registry URL were stored in Kafka."""
    leaky = yaml.safe_load(yaml.safe_dump(TENANT))
    leaky["source"]["url"] = (
        "postgresql+psycopg2://crm@db:5432/crm?password=hunter2&sslpassword=hunter3"
    )
    leaky["kafka"]["format"] = "confluent"
    leaky["schema_registry"] = {
        "url": "https://reg:hunter4@registry:8081",
        "basic_auth": {"user": "reg", "password": "hunter5"},
        "options": {"bearer.auth.token": "hunter6"},
    }
    problems = literal_secrets(leaky)
    paths = sorted(p.split(":")[0] for p in problems)
    assert paths == [
        "schema_registry.basic_auth.password",
        "schema_registry.options.bearer.auth.token",
        "schema_registry.url",
        "source.url",
        "source.url",
    ], problems
    assert not any(f"hunter{i}" in p for p in problems for i in range(2, 7))
    fixed = yaml.safe_load(yaml.safe_dump(leaky))
    fixed["source"]["url"] = "postgresql+psycopg2://crm@db/crm?password=${PW}&sslpassword=${K}"
    fixed["schema_registry"] = {
        "url": "https://registry:8081",
        "basic_auth": {"user": "reg", "password": "${file:/run/reg}"},
        "options": {"bearer.auth.token": "${TOKEN}"},
    }
    assert literal_secrets(fixed) == []
