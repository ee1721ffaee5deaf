"""Fixtures for the tests on the secured broker (127.0.0.1:9190)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.secure.broker import SecureKafka, secure_kafka_session
from tests.integration.secure.registry_tls import TlsRegistry, tls_registry_session


@pytest.fixture
def secure_kafka() -> Iterator[SecureKafka]:
    """Admin access to the secured broker; users and ACLs made by the test are removed after."""
    yield from secure_kafka_session()


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRegistry]:
    """The test module's own registry over HTTPS (8480-8482), stopped after the module."""
    yield from tls_registry_session(tmp_path_factory.mktemp("tls-registry"))
