"""Many tenants registering one new subject at the same moment, against the real Apicurio
registry: every one gets the same schema id; none is told its schema is "incompatible" because
another tenant created the subject (or its compatibility rule) a moment earlier."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from poller.avro.registry import Registry
from poller.config import SchemaRegistryConfig
from poller.errors import IncompatibleSchemaError, PollerError

pytestmark = pytest.mark.integration

TENANTS = 8
ROUNDS = 6
SCHEMA = {
    "type": "record",
    "name": "RaceKey",
    "namespace": "poller.test",
    "fields": [{"name": "tenant", "type": "string"}, {"name": "local_id", "type": "string"}],
}


def test_tenants_registering_one_subject_at_once_all_get_its_id(
    prefix: str, registry_url: str
) -> None:
    cfg = SchemaRegistryConfig(url=registry_url, compatibility="FULL_TRANSITIVE")
    for round_no in range(ROUNDS):
        subject = f"{prefix}.race{round_no}-key"
        barrier = threading.Barrier(TENANTS)
        ids: list[int] = []
        errors: list[str] = []

        def tenant(
            subject: str = subject,
            barrier: threading.Barrier = barrier,
            ids: list[int] = ids,
            errors: list[str] = errors,
        ) -> None:
            registry = Registry(cfg)  # one client per tenant, as separate processes have
            try:
                barrier.wait(10)
                ids.append(registry.register_waiting(subject, SCHEMA, 60).schema_id)
            except PollerError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                registry.close()

        threads = [threading.Thread(target=tenant) for _ in range(TENANTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, f"round {round_no}: {errors}"
        assert len(ids) == TENANTS and len(set(ids)) == 1, (round_no, ids)
        # Apicurio may record the same schema twice under a race; every version is one id.
        client = SchemaRegistryClient({"url": registry_url})
        versions = client.get_versions(subject)
        assert {client.get_version(subject, v).schema_id for v in versions} == set(ids)
        assert client.get_compatibility(subject) == "FULL_TRANSITIVE"


def test_an_incompatible_schema_is_still_refused_as_incompatible(
    prefix: str, registry_url: str
) -> None:
    """The race handling does not swallow a real refusal (Apicurio answers error_code 0 and
    "Incompatible artifact"; Confluent error_code 409)."""
    registry = Registry(SchemaRegistryConfig(url=registry_url, compatibility="FULL_TRANSITIVE"))
    subject = f"{prefix}.refused-key"
    try:
        registry.register(subject, SCHEMA)
        other = {**SCHEMA, "fields": [{"name": "tenant", "type": "long"}]}
        with pytest.raises(IncompatibleSchemaError, match="incompatible"):
            registry.register(subject, other)
    finally:
        registry.close()


def test_409_bodies_are_told_apart() -> None:
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    from poller.avro.registry import conflict_kind

    def kind(code: int, message: str) -> str:
        return conflict_kind(SchemaRegistryError(409, code, message))

    assert kind(409, "Schema being registered is incompatible with an earlier schema") == (
        "incompatible"
    )
    assert kind(0, "Incompatible artifact: s [AVRO], num of incompatible diffs: {1}") == (
        "incompatible"
    )
    exists = "An artifact with ID 'p.customers-key' in group 'null' already exists."
    assert kind(409, exists) == "exists"
    assert kind(0, "A rule named 'COMPATIBILITY' already exists.") == "exists"
    assert kind(0, "something else") == "other"
