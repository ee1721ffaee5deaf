"""Harness of the fault tests: real `poller run` processes against the real broker and databases.

* `SourceDB` seeds a source table fast (server-side `generate_series` in PostgreSQL, the SEQUENCE
  engine in MariaDB), snapshots what the topics must hold, and kills the poller's database
  sessions.
* `Scenario` (fixture `scenario`) owns one test's unique tenant and topic prefix: it writes config
  files, starts `poller run` subprocesses with their output in a log file each, kills whatever is
  still running at teardown, and reads the results back: the entity topics with a read_committed
  consumer, and the stored watermark (`poller offsets show --json`).
* `verify_exactly_once` compares an entity topic with the source: every key exactly once, none
  missing, none extra, and the version columns equal.

Every wait is bounded and fails with the poller's log tail. Randomness is seeded
(POLLER_FAULT_SEED), and the seed is part of every failure message that depends on it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.integration.faults.broker import DedicatedKafka
from tests.integration.faults.harness import Scenario
from tests.integration.faults.own_postgres import DedicatedPostgres
from tests.integration.faults.sources import SourceDB

T = TypeVar("T")

SEED = int(os.environ.get("POLLER_FAULT_SEED", "20240611"))
UTC = dt.UTC

# Where `.venv/bin/poller` lives: next to the interpreter running the tests.
POLLER_BIN = Path(sys.executable).with_name("poller")


@pytest.fixture
def pg(pg_url: str) -> Iterator[SourceDB]:
    db = SourceDB(pg_url)
    yield db
    db.close()


@pytest.fixture
def maria(mariadb_url: str) -> Iterator[SourceDB]:
    db = SourceDB(mariadb_url)
    yield db
    db.close()


# ------------------------------------------------------------------------------ entities


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str
) -> Iterator[Scenario]:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:30]
    sc = Scenario(tmp_path, kafka_bootstrap, name)
    yield sc
    sc.close()


# ---------------------------------------------------------------------------------- metrics


@pytest.fixture
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedKafka]:
    """A broker of the test's own (free ports, own data dir), for tests that stop Kafka:
    stopping the shared one would break the tests running beside them."""
    broker = DedicatedKafka(tmp_path_factory.mktemp("kafka"))
    try:
        broker.start()
        yield broker
    finally:
        broker.kill()


@pytest.fixture
def own_postgres() -> Iterator[DedicatedPostgres]:
    """A PostgreSQL cluster of the test's own, for tests that stop the database server."""
    server = DedicatedPostgres()
    try:
        server.create()
        yield server
    finally:
        server.drop()
