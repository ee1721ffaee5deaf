"""Fixtures for tests that talk to the real local services.

The services are started by ``scripts/services up`` (``make services-up``):
Kafka on 127.0.0.1:9092, PostgreSQL on 127.0.0.1:5432 and MariaDB on
127.0.0.1:3306, all with user ``poller`` / password ``poller``.  When a
service does not answer, the fixtures fail the test with the reason; they
never skip.

Environment overrides:
  POLLER_TEST_KAFKA              bootstrap servers (default 127.0.0.1:9092)
  POLLER_TEST_PG_ADMIN_URL       SQLAlchemy URL of a database the per-test
                                 databases are created from
  POLLER_TEST_MARIADB_ADMIN_URL  same for MariaDB
  POLLER_TEST_REGISTRY           Confluent-compatible Schema Registry URL
                                 (default http://127.0.0.1:8081/apis/ccompat/v7)
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICES_SCRIPT = REPO_ROOT / "scripts" / "services"

KAFKA_BOOTSTRAP = os.environ.get("POLLER_TEST_KAFKA", "127.0.0.1:9092")
PG_ADMIN_URL = os.environ.get(
    "POLLER_TEST_PG_ADMIN_URL",
    "postgresql+psycopg2://poller:poller@127.0.0.1:5432/poller_test",
)
MARIADB_ADMIN_URL = os.environ.get(
    "POLLER_TEST_MARIADB_ADMIN_URL",
    "mysql+pymysql://poller:poller@127.0.0.1:3306/poller_test?charset=utf8mb4",
)

REGISTRY_URL = os.environ.get(
    "POLLER_TEST_REGISTRY", "http://127.0.0.1:8081/apis/ccompat/v7"
)  # Apicurio's Confluent-compatible API, started by scripts/services

HOW_TO_START = "start the local stack with `scripts/services up` (or `make services-up`)"


def unique_name(prefix: str) -> str:
    """``prefix`` plus a short random suffix, safe for topic and database names."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------- scripts


@pytest.fixture(scope="session")
def services_script() -> Path:
    """Path of scripts/services (``up|down [kafka|postgres|mariadb|prometheus]``, ``status``)."""
    return SERVICES_SCRIPT


@dataclass(frozen=True)
class KafkaService:
    """Stops and starts the local broker, for fault tests.

    ``stop()`` runs ``scripts/services down kafka`` (SIGTERM, SIGKILL after 30 s; data kept)
    and ``start()`` runs ``scripts/services up kafka`` (returns once the broker answers).
    """

    script: Path

    def _run(self, *args: str, timeout: float) -> None:
        proc = subprocess.run(
            [str(self.script), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"`scripts/services {' '.join(args)}` exited {proc.returncode}:\n"
                f"{proc.stdout}{proc.stderr}"
            )

    def stop(self) -> None:
        self._run("down", "kafka", timeout=90)

    def start(self) -> None:
        self._run("up", "kafka", timeout=180)


@pytest.fixture(scope="session")
def kafka_service(services_script: Path) -> KafkaService:
    return KafkaService(services_script)


# -------------------------------------------------------------------- registry


@pytest.fixture(scope="session")
def registry_url() -> str:
    """Confluent-compatible Schema Registry URL; fails the test if it does not answer."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{REGISTRY_URL}/subjects", timeout=10) as resp:
            resp.read()
    except OSError as exc:
        pytest.fail(
            f"the schema registry does not answer at {REGISTRY_URL} ({exc}); {HOW_TO_START}",
            pytrace=False,
        )
    return REGISTRY_URL


# ----------------------------------------------------------------------- kafka


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """Bootstrap servers of the local broker; fails the test if it does not answer."""
    # librdkafka logs through Python logging, so pytest captures the retries.
    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP}, logger=logging.getLogger("kafka"))
    try:
        metadata = admin.list_topics(timeout=10)
    except KafkaException as exc:
        pytest.fail(
            f"Kafka does not answer at {KAFKA_BOOTSTRAP} ({exc}); {HOW_TO_START}",
            pytrace=False,
        )
    if not metadata.brokers:
        pytest.fail(f"Kafka at {KAFKA_BOOTSTRAP} reports no brokers; {HOW_TO_START}", pytrace=False)
    return KAFKA_BOOTSTRAP


@pytest.fixture(scope="session")
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


NewTopicFn = Callable[..., str]


def _wait_for_leaders(admin: AdminClient, name: str, partitions: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            topic = admin.list_topics(topic=name, timeout=5).topics.get(name)
        except KafkaException:
            topic = None
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"topic {name} has no leader for every partition after {timeout}s")
        time.sleep(0.1)


@pytest.fixture
def topic_factory(kafka_admin: AdminClient) -> Iterator[NewTopicFn]:
    """``new_topic(name_prefix, partitions=1, config=None) -> name``.

    Creates a uniquely named topic (replication factor 1), waits until every
    partition has a leader, and deletes the topics at teardown.
    """
    created: list[str] = []

    def new_topic(
        name_prefix: str, partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        name = unique_name(name_prefix)
        spec = NewTopic(
            name, num_partitions=partitions, replication_factor=1, config=dict(config or {})
        )
        futures = kafka_admin.create_topics([spec], operation_timeout=30, request_timeout=30)
        try:
            futures[name].result(timeout=30)
        except KafkaException as exc:
            pytest.fail(f"could not create topic {name} on {KAFKA_BOOTSTRAP}: {exc}")
        created.append(name)
        _wait_for_leaders(kafka_admin, name, partitions, timeout=30)
        return name

    yield new_topic

    if created:
        # Best effort: a fault test may leave the broker down.
        with contextlib.suppress(Exception):
            futures = kafka_admin.delete_topics(created, operation_timeout=15, request_timeout=15)
            for future in futures.values():
                future.result(timeout=15)


@pytest.fixture
def new_topic(topic_factory: NewTopicFn) -> NewTopicFn:
    """Alias of :func:`topic_factory`."""
    return topic_factory


# ------------------------------------------------------------------- databases


def _admin_engine(url: str, what: str) -> sa.Engine:
    engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        engine.dispose()
        pytest.fail(
            f"{what} does not answer at {make_url(url).render_as_string(hide_password=True)} "
            f"({exc.__class__.__name__}: {exc}); {HOW_TO_START}",
            pytrace=False,
        )
    return engine


def _database_url(admin_url: str, database: str) -> str:
    return make_url(admin_url).set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def mariadb_admin_url() -> str:
    return MARIADB_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database ``t_<random>``, dropped afterwards."""
    engine = _admin_engine(pg_admin_url, "PostgreSQL")
    name = unique_name("t")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield _database_url(pg_admin_url, name)
    finally:
        try:
            with engine.connect() as conn:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": name},
                )
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            engine.dispose()


@pytest.fixture
def mariadb_url(mariadb_admin_url: str) -> Iterator[str]:
    """SQLAlchemy URL of a fresh MariaDB database ``t_<random>`` (utf8mb4), dropped afterwards."""
    engine = _admin_engine(mariadb_admin_url, "MariaDB")
    name = unique_name("t")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
        yield _database_url(mariadb_admin_url, name)
    finally:
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT id FROM information_schema.processlist "
                        "WHERE db = :name AND id <> CONNECTION_ID()"
                    ),
                    {"name": name},
                ).all()
                for (conn_id,) in rows:
                    with contextlib.suppress(sa.exc.SQLAlchemyError):  # already gone
                        conn.execute(sa.text(f"KILL {int(conn_id)}"))
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        finally:
            engine.dispose()
