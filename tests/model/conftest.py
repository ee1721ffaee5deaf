"""The model test uses the shared services' fixtures (per-test databases, Kafka)."""

import logging
from collections.abc import Iterator

import pytest

from tests.integration.conftest import (  # noqa: F401 - fixtures
    kafka_bootstrap,
    mariadb_admin_url,
    mariadb_url,
    pg_admin_url,
    pg_url,
)


@pytest.fixture(autouse=True)
def _poller_log_level() -> Iterator[None]:
    """The in-process poller logs at WARNING during a model run (pollers.PollerHost); the level
    is given back afterwards, so tests that read the poller's INFO lines are not affected."""
    logger = logging.getLogger("poller")
    level = logger.level
    yield
    logger.setLevel(level)
