"""Fixtures of the fleet tests: a `Fleet` (unique names, worker processes killed at teardown)
over a fresh PostgreSQL database with the shared customers table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fleet.harness import Fleet, create_source


@pytest.fixture
def fleet(tmp_path: Path, kafka_bootstrap: str, pg_url: str) -> Iterator[Fleet]:
    create_source(pg_url)
    f = Fleet(tmp_path, kafka_bootstrap, pg_url)
    yield f
    f.close()
