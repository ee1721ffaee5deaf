"""The verify tests reuse the fault tests' harness: real `poller` processes, a fresh database
per test (`pg`, `maria`), a unique tenant and topic prefix (`scenario`)."""

from __future__ import annotations

import pytest

from tests.integration.faults.conftest import maria, pg, scenario
from tests.integration.faults.sources import SourceDB

__all__ = ["maria", "pg", "scenario"]


@pytest.fixture(params=["postgresql", "mariadb"])
def db(request: pytest.FixtureRequest) -> SourceDB:
    """The test's source database, once on PostgreSQL and once on MariaDB."""
    fixture = "pg" if request.param == "postgresql" else "maria"
    source: SourceDB = request.getfixturevalue(fixture)
    return source
