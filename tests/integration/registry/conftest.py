"""Fixtures of the registry tests: a unique topic prefix whose topics and registry subjects
are deleted after the test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from tests.integration.pipeline.helpers import topics_deleted_after, unique_prefix


@pytest.fixture
def prefix(kafka_bootstrap: str, registry_url: str) -> Iterator[str]:
    p = unique_prefix()
    with topics_deleted_after(kafka_bootstrap, p):
        yield p
    client = SchemaRegistryClient({"url": registry_url})
    with contextlib.suppress(Exception):
        for subject in client.get_subjects():
            if subject.startswith(p + "."):
                client.delete_subject(subject)
