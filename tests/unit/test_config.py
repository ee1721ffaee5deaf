"""Configuration: every problem listed at once with its path; secrets from env and files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from poller.config import load_config, parse_config
from poller.errors import ConfigError


def base(**entity: Any) -> dict[str, Any]:
    customers = {
        "table": "customers",
        "key": "customer_id",
        "fields": {"local_id": "customer_id", "first_name": "f_name"},
        "batching": {"mode": "id", "column": "customer_id"},
        **entity,
    }
    return {
        "tenant": "acme-corp",
        "source": {"url": "postgresql+psycopg2://crm:${CRM_PW}@db:5432/crm"},
        "schema_registry": {"url": "http://registry.example:8081"},
        "entities": {"customers": customers},
    }


def problems(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return info.value.problems


def test_valid_config_expands_secrets_from_env_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_PW", "s3cret")
    secret = tmp_path / "kafka_pw"
    secret.write_text("k-pass\n")
    raw = base()
    raw["kafka"] = {"options": {"sasl.password": f"${{file:{secret}}}", "linger.ms": 5}}
    cfg = parse_config(raw)
    assert cfg.source.url.endswith("crm:s3cret@db:5432/crm")
    assert "s3cret" not in cfg.source.safe_url
    assert cfg.kafka.producer_options()["sasl.password"] == "k-pass"
    assert cfg.transactional_id() == "poller.acme-corp"
    # Security settings reach every client; producer tuning stays with the producer.
    assert cfg.kafka.client_options() == {
        "sasl.password": "k-pass",
        "bootstrap.servers": "127.0.0.1:9092",
    }


def test_every_problem_is_listed_at_once_with_its_path() -> None:
    raw = base(
        table="customers; drop table x",
        batching={"mode": "sometimes", "column": "customer_id"},
        batch_size=0,
    )
    raw["entities"]["customers"]["fields"]["shoe_size"] = "shoe"
    raw["entities"]["unicorns"] = {"table": "u"}
    raw["source"]["timezone"] = "Mars/Olympus"
    found = problems(raw)
    text = "\n".join(found)
    for expected in (
        "source.url: environment variable CRM_PW is not set",
        "source.timezone: unknown time zone 'Mars/Olympus'",
        "entities.customers.table: table 'customers; drop table x' is not a plain identifier",
        "entities.customers.batching.mode: Input should be 'id', 'timestamp' or 'timestamp+id'",
        "entities.customers.batch_size: Input should be greater than or equal to 1",
        "entities.customers.fields.shoe_size: not a field of schema customers",
        "entities.unicorns: unknown entity",
    ):
        assert expected in text, text
    assert len(found) >= 7


@pytest.mark.parametrize(
    ("entity", "expected"),
    [
        ({"query": "SELECT 1"}, "give exactly one of `table` or `query`"),
        ({"table": None, "query": "DELETE FROM customers"}, "query must be a SELECT"),
        ({"table": None, "query": "SELECT 1; SELECT 2"}, "single statement"),
        (
            {"batching": {"mode": "timestamp+id", "column": "updated_at"}},
            "needs id_column",
        ),
        ({"fields": {"local_id": "id -- comment"}}, "';' or '--'"),
        ({"fields": {"first_name": "f_name"}}, "required field 'local_id' is not mapped"),
        ({"key": "a.b"}, "not a plain identifier"),
    ],
)
def test_entity_rules(
    entity: dict[str, Any], expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRM_PW", "x")
    assert expected in "\n".join(problems(base(**entity)))


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "poller.yaml"
    bad.write_text("tenant: [unclosed\n")
    with pytest.raises(ConfigError, match="YAML syntax") as info:
        load_config(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_a_bad_url_is_reported_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_PW", "hunter2")
    raw = base()
    raw["source"]["url"] = "not a url :// crm:${CRM_PW}@"
    text = "\n".join(problems(raw))
    assert "source.url: not a valid SQLAlchemy URL" in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql+psycopg2://crm:pw@db:70000/crm", "port 70000 is not a TCP port (1-65535)"),
        ("postgresql+psycopg2://crm:pw@db:0/crm", "port 0 is not a TCP port (1-65535)"),
        (
            "sqlite:////no/such/dir/crm.db",
            "the SQLite file '/no/such/dir/crm.db' is in a directory",
        ),
    ],
)
def test_a_url_that_cannot_connect_is_named_at_load(url: str, said: str) -> None:
    """Not after retry.startup_timeout_s of connection attempts."""
    raw = base()
    raw["source"]["url"] = url
    text = "\n".join(problems(raw))
    assert f"source.url: {said}" in text
    assert "pw@" not in text


def test_sqlite_files_that_can_be_opened_pass(tmp_path: Path) -> None:
    for url in (f"sqlite:///{tmp_path}/new.db", "sqlite://", "sqlite:///:memory:",
                "sqlite:///file:crm?mode=memory&uri=true"):  # fmt: skip
        raw = base()
        raw["source"]["url"] = url
        assert parse_config(raw).source.url == url


def test_a_missing_sqlite_directory_is_not_checked_where_the_config_is_only_inspected() -> None:
    """`tenants put` and `poller acl` check a config that runs on another host."""
    raw = base()
    raw["source"]["url"] = "sqlite:////no/such/dir/crm.db"
    assert parse_config(raw, check_files=False).source.url == raw["source"]["url"]
