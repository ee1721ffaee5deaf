"""Fixtures for the tests on the secured broker (127.0.0.1:9190)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.secure.broker import SecureKafka, secure_kafka_session


@pytest.fixture
def secure_kafka() -> Iterator[SecureKafka]:
    """Admin access to the secured broker; users and ACLs made by the test are removed after."""
    yield from secure_kafka_session()
