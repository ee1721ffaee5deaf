"""Issue 17: the ACL set `poller acl` prints, and the errors that name a missing one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from poller.config import parse_config
from poller.errors import ConfigError, KafkaAuthenticationError, KafkaAuthorizationError
from poller.kafka import acls
from poller.kafka.publisher import classify


def _cfg(tenant: str, **kafka: Any) -> Any:
    return parse_config(
        {
            "tenant": tenant,
            "source": {"url": "sqlite:///x.sqlite"},
            "kafka": {
                "format": "single_object",
                "topic_prefix": f"retail.{tenant}",
                "layout": "shared",  # acme.eu: per_tenant refuses dots
                "options": {"sasl.username": f"u-{tenant}"},
                **kafka,
            },
            "entities": {
                "customers": {
                    "table": "people",
                    "key": "id",
                    "fields": {"local_id": "id"},
                    "batching": {"mode": "id", "column": "id"},
                    "on_bad_row": "dead_letter",
                }
            },
        }
    )


def test_transactional_ids_are_literal_so_acme_cannot_match_acme_eu() -> None:
    a = acls.tenant_acls(_cfg("acme"))
    eu = acls.tenant_acls(_cfg("acme.eu"))
    assert all(x.pattern_type == "LITERAL" for x in a + eu)
    tids = {x.resource_name for x in a if x.resource_type == "TRANSACTIONAL_ID"}
    assert tids == {"poller.acme", "poller.acme.backfill", "poller.acme.repair",
                    "poller.acme.reconcile"}  # fmt: skip
    eu_names = {x.resource_name for x in eu}
    assert not any(n in eu_names for n in {x.resource_name for x in a})


def test_run_set_is_what_the_poller_touches_and_nothing_implied() -> None:
    run = {(x.resource_type, x.resource_name, x.operation)
           for x in acls.tenant_acls(_cfg("acme"), ("run",))}  # fmt: skip
    t, wm, dl = "retail.acme.customers", "retail.acme.watermarks", "retail.acme.dead_letter"
    assert run == {
        ("TOPIC", t, "WRITE"), ("TOPIC", t, "DESCRIBE_CONFIGS"),
        ("TOPIC", wm, "WRITE"), ("TOPIC", wm, "DESCRIBE_CONFIGS"), ("TOPIC", wm, "READ"),
        ("TOPIC", dl, "WRITE"), ("TOPIC", dl, "DESCRIBE_CONFIGS"),
        ("TRANSACTIONAL_ID", "poller.acme", "WRITE"),
        ("GROUP", "poller-watermarks-acme", "DESCRIBE"),
    }  # fmt: skip


def test_commands_and_json() -> None:
    entries = acls.tenant_acls(_cfg("acme"), ("run",))
    lines = acls.as_commands(entries, "User:u-acme", "k:9093")
    assert lines[0] == "# run"
    assert all("--resource-pattern-type literal" in line for line in lines[1:])
    assert any("--transactional-id poller.acme " in line for line in lines)
    rows = json.loads(acls.as_json(entries, "User:u-acme"))
    assert {r["principal"] for r in rows} == {"User:u-acme"}
    assert len(rows) == len(entries)


def test_a_denied_transactional_id_is_terminal_and_named() -> None:
    cfg = _cfg("acme")
    err = KafkaError(KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "denied", fatal=True)
    exc = classify(KafkaException(err), "init_transactions", cfg.kafka, "poller.acme")
    assert isinstance(exc, KafkaAuthorizationError) and exc.exit_code == 5
    assert "WRITE on TRANSACTIONAL_ID 'poller.acme' (LITERAL) for User:u-acme" in str(exc)


def test_a_denied_topic_write_names_topic_and_operation() -> None:
    cfg = _cfg("acme")
    err = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")
    exc = classify(KafkaException(err), "produce to retail.acme.customers", cfg.kafka)
    assert isinstance(exc, KafkaAuthorizationError)
    assert "WRITE on TOPIC 'retail.acme.customers'" in str(exc)


def test_a_failed_login_is_named_not_unreachable() -> None:
    cfg = _cfg("acme")
    err = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: bad credentials")
    exc = classify(KafkaException(err), "producer", cfg.kafka, "poller.acme")
    assert isinstance(exc, KafkaAuthenticationError) and exc.exit_code == 5
    assert "SASL authentication error" in str(exc) and "not reachable" not in str(exc)


def test_per_tenant_layout_puts_every_topic_under_the_tenant() -> None:
    cfg = parse_config(
        {
            "tenant": "acme",
            "source": {"url": "sqlite:///x.sqlite"},
            "kafka": {"format": "single_object", "layout": "per_tenant"},
            "entities": {
                "customers": {
                    "table": "people",
                    "key": "id",
                    "fields": {"local_id": "id"},
                    "batching": {"mode": "id", "column": "id"},
                }
            },
        }
    )
    k = cfg.kafka
    assert k.topic_for("customers", "acme") == "retail.acme.customers"
    assert k.watermark_topic_name("acme") == "retail.acme.watermarks"
    assert k.dead_letter_topic_name("acme") == "retail.acme.dead_letter"


def _raw(tenant: str, **kafka: Any) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "source": {"url": "sqlite:///x.sqlite"},
        "kafka": {"format": "single_object", **kafka},
        "entities": {
            "customers": {
                "table": "people",
                "key": "id",
                "fields": {"local_id": "id"},
                "batching": {"mode": "id", "column": "id"},
            }
        },
    }


def test_a_shared_watermark_topic_with_a_tenant_principal_is_refused() -> None:
    with pytest.raises(ConfigError, match="shared by every tenant"):
        parse_config(_raw("acme", options={"sasl.username": "acme"}))
    # chosen on purpose (one trusted operator), or per tenant: accepted
    parse_config(_raw("acme", layout="shared", options={"sasl.username": "op"}))
    parse_config(_raw("acme", layout="per_tenant", options={"sasl.username": "acme"}))


def test_per_tenant_layout_refuses_overlapping_tenant_ids_and_foreign_templates() -> None:
    with pytest.raises(ConfigError, match=r"without '\.'"):
        parse_config(_raw("acme.eu", layout="per_tenant"))
    with pytest.raises(ConfigError, match=r"must start with \{prefix\}\.\{tenant\}\."):
        parse_config(_raw("acme", layout="per_tenant", watermark_topic="{prefix}.watermarks"))


def test_poller_acl_prints_commands_json_and_the_migration(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from poller.cli.main import main

    raw = _raw("acme", options={"sasl.username": "acme", "sasl.password": "${NOT_SET}"})
    raw["kafka"]["layout"] = "shared"
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["acl", "--config", str(path), "--feature", "run"]) == 0
    out = capsys.readouterr().out
    assert "--allow-principal User:acme --operation Write --topic retail.customers" in out
    assert "#   retail.watermarks  ->  retail.acme.watermarks" in out
    assert main(["acl", "--config", str(path), "--json", "--tenant", "acme"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["feature"] for r in rows} == set(acls.FEATURES)
    assert main(["acl", "--config", str(path), "--tenant", "other"]) == 2


class _FakeGroups:
    """describe_consumer_groups answering the given error codes in turn, then success."""

    def __init__(self, codes: list[int]) -> None:
        self.codes, self.calls = list(codes), 0

    def describe_consumer_groups(self, groups: list[str], request_timeout: float) -> Any:
        import concurrent.futures

        self.calls += 1
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        if self.codes:
            fut.set_exception(KafkaException(KafkaError(self.codes.pop(0))))
        else:
            fut.set_result(None)
        return {groups[0]: fut}


def test_group_check_waits_for_a_loading_coordinator_and_names_a_denial() -> None:
    from poller.kafka.access import _group_allowed

    loading = _FakeGroups([KafkaError.COORDINATOR_LOAD_IN_PROGRESS] * 2)
    assert _group_allowed(loading, "g", timeout_s=10) is True  # type: ignore[arg-type]
    assert loading.calls == 3
    denied = _FakeGroups([KafkaError.GROUP_AUTHORIZATION_FAILED])
    assert _group_allowed(denied, "g", timeout_s=10) is False  # type: ignore[arg-type]


def test_poller_acl_refuses_a_tenant_topic_that_is_the_fleets_own(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tenant's template naming the fleet's tenants topic would grant the tenant's principal
    Write/Read on every tenant's configuration."""
    import yaml

    from poller.cli.main import main

    worker = tmp_path / "worker.yaml"
    worker.write_text(yaml.safe_dump({"kafka": {"topic_prefix": "retail"}}), encoding="utf-8")
    raw = _raw("tenants", layout="shared", topic_template="{prefix}.{tenant}")
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["acl", "--config", str(path), "--worker-config", str(worker)]) == 2
    err = capsys.readouterr().err
    assert "its topic 'retail.tenants' is the fleet's own" in err, err
    # an ordinary tenant: its set, the worker's and the operator's, none overlapping
    raw = _raw("acme", layout="per_tenant")
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    assert main(["acl", "--config", str(path), "--worker-config", str(worker), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["set"] for r in rows} == {"tenant acme", "fleet worker", "operator"}
    fleet = {"retail.tenants", "retail.tenant_status"}
    assert not [r for r in rows if r["set"] == "tenant acme" and r["resource_name"] in fleet]
