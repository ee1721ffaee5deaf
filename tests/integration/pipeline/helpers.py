"""Helpers of test_pipeline.py: configs with a unique topic prefix, running the poller in-process
or as a `poller run` process, and reading entity topics back with a read_committed consumer."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from confluent_kafka import (
    Consumer,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from sqlalchemy.pool import NullPool

from poller.avro.decoder import Decoder
from poller.config import KafkaConfig, parse_config
from poller.kafka.watermark import Watermark
from poller.kafka.watermark import load as load_watermarks
from poller.pipeline.runner import Poller
from tests.integration.procs import LoggedProcess
from tests.integration.topics import read_to_end

POLLER_BIN = Path(sys.executable).with_name("poller")


def unique_prefix() -> str:
    return f"pipe_{uuid.uuid4().hex[:12]}"


def kafka_section(bootstrap: str, prefix: str) -> dict[str, Any]:
    """Topics and transactional id unique to one test: it never fences another poller."""
    return {
        "bootstrap_servers": bootstrap,
        "topic_prefix": prefix,
        "transactional_id_prefix": prefix,
        "format": "single_object",  # these tests decode with the poller's own Decoder
    }


def config(
    url: str,
    tenant: str,
    bootstrap: str,
    prefix: str,
    entities: dict[str, dict[str, Any]],
    **source: Any,
) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "source": {"url": url, **source},
        "kafka": kafka_section(bootstrap, prefix),
        "metrics": {"enabled": False},
        # A test fails within seconds instead of retrying a missing service for ever.
        "retry": {"max_attempts": 3, "max_backoff_s": 2, "startup_timeout_s": 10},
        "entities": entities,
    }


def run_once(cfg: dict[str, Any]) -> None:
    """One in-process `poller run --once`: returns when every entity is caught up."""
    Poller(parse_config(cfg)).run(once=True)


def engine(url: str) -> sa.Engine:
    return sa.create_engine(url, poolclass=NullPool)


def execute(url: str, *statements: str, params: dict[str, Any] | None = None) -> None:
    eng = engine(url)
    try:
        with eng.begin() as conn:
            for sql in statements:
                conn.execute(sa.text(sql), params or {})
    finally:
        eng.dispose()


# --------------------------------------------------------------------------- reading Kafka


@dataclass(frozen=True)
class Message:
    tenant: str
    key: object
    partition: int
    offset: int
    timestamp_ms: int
    entity: str
    record: dict[str, object]


def read_topics(
    bootstrap: str, topics: Iterable[str], timeout_s: float = 20.0
) -> dict[str, list[Message]]:
    """Every committed message of the topics (one consumer for all), decoded, in
    partition/offset order per topic. Stops at the end of every partition; fails if the end is
    not reached (no message for `timeout_s`)."""
    decoder = Decoder()
    out: dict[str, list[Message]] = {}
    for topic, messages in read_to_end(bootstrap, topics, timeout_s, group="pipeline-test").items():
        out[topic] = []
        for msg in messages:
            tenant, *parts = json.loads(msg.key())  # a composite key has one item per column
            key = parts[0] if len(parts) == 1 else tuple(parts)
            entity, record = decoder.decode(msg.value())
            out[topic].append(
                Message(
                    tenant, key, msg.partition(), msg.offset(), msg.timestamp()[1], entity, record
                )
            )
    return out


def read_entity(bootstrap: str, topic: str) -> list[Message]:
    return read_topics(bootstrap, [topic])[topic]


def key_counts(messages: Iterable[Message]) -> Counter[object]:
    return Counter(m.key for m in messages)


def assert_exactly_once(
    messages: list[Message], expected: Iterable[object], tenant: str, what: str
) -> None:
    """Every expected key exactly once, nothing else, all of `tenant`."""
    wanted = set(expected)
    assert wanted, f"{what}: no source rows, nothing is being tested"
    strangers = Counter(m.tenant for m in messages if m.tenant != tenant)
    assert not strangers, f"{what}: messages of other tenants: {dict(strangers)}"
    counts = key_counts(messages)
    dupes = sorted((k, n) for k, n in counts.items() if n > 1)
    missing = wanted - counts.keys()
    extra = counts.keys() - wanted
    assert not dupes and not missing and not extra, (
        f"{what}: {len(messages)} messages for {len(wanted)} rows; duplicated {dupes[:5]} "
        f"({len(dupes)}), missing {sorted(missing)[:5]} ({len(missing)}), "
        f"unexpected {sorted(extra, key=str)[:5]} ({len(extra)})"
    )


class EndOffsets:
    """Cheap progress probe: the end offset of partition 0 of a topic (0 while it is missing).
    On the watermark topic each committed batch adds two offsets (its watermark and the
    transaction's commit marker)."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"pipeline-probe-{uuid.uuid4().hex}"}
        )

    def high(self, topic: str) -> int:
        try:
            _low, high = self.consumer.get_watermark_offsets(
                TopicPartition(topic, 0), timeout=5, cached=False
            )
        except KafkaException:  # not created yet
            return 0
        return int(high)

    def close(self) -> None:
        self.consumer.close()


def stored_watermarks(bootstrap: str, prefix: str, tenant: str) -> dict[str, Watermark]:
    k = KafkaConfig(**kafka_section(bootstrap, prefix))
    return load_watermarks(k, k.watermark_topic_name(tenant), tenant, timeout_s=15)


@contextlib.contextmanager
def topics_deleted_after(bootstrap: str, prefix: str) -> Iterator[None]:
    """Deletes the topics the test's pollers created (`<prefix>.*`), best effort."""
    try:
        yield
    finally:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        with contextlib.suppress(Exception):
            names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix + ".")]
            if names:
                for fut in admin.delete_topics(names, operation_timeout=15).values():
                    fut.result(timeout=20)


# --------------------------------------------------------------------------- subprocesses


class PollerProcess(LoggedProcess):
    """`poller run --config F [--once]` in its own process, output in a log file."""

    def __init__(self, cfg: dict[str, Any], workdir: Path, label: str, *args: str) -> None:
        if not POLLER_BIN.exists():
            pytest.fail(f"{POLLER_BIN} not found: install the project (`make venv`)")
        self.config_path = workdir / f"{label}.yaml"
        self.config_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        argv = [str(POLLER_BIN), "run", "--config", str(self.config_path), *args]
        super().__init__(argv, workdir / f"{label}.log", label)


def wait_until(
    condition: Any,
    timeout: float,
    what: str,
    interval: float = 0.05,
    proc: PollerProcess | None = None,
) -> Any:
    """Poll `condition()` until it returns a true value; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc is not None and not proc.alive():
            pytest.fail(f"poller exited ({proc.proc.returncode}) while waiting for {what}:\n"
                        f"{proc.log()[-4000:]}")  # fmt: skip
        if time.monotonic() > deadline:
            extra = f"; poller log:\n{proc.log()[-4000:]}" if proc is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


TENANT, OTHER = "acme-corp", "globex"
PEOPLE_DDL = (
    "CREATE TABLE people (id integer PRIMARY KEY, user_id varchar(64) NOT NULL, "
    "f_name varchar(100) NOT NULL, l_name varchar(100), updated_at timestamp NOT NULL)",
    "CREATE INDEX ix_people_keyset ON people (user_id, updated_at, id)",
)


def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'source.sqlite'}"
    url: str = request.getfixturevalue("pg_url" if backend == "postgresql" else "mariadb_url")
    return url


def tenant_keys(url: str, table: str, key: str, tenant: str) -> list[object]:
    t = sa.table(table, sa.column(key), sa.column("user_id"))
    eng = engine(url)
    try:
        with eng.connect() as conn:
            return list(conn.execute(sa.select(t.c[key]).where(t.c.user_id == tenant)).scalars())
    finally:
        eng.dispose()


def people_entity(mode: str, batch_size: int, **extra: Any) -> dict[str, Any]:
    """`customers` read from the table `people` (PostgreSQL)."""
    return {
        "table": "people",
        "key": "id",
        "fields": {"local_id": "id", "first_name": "f_name", "last_name": "l_name",
                   "updated_at": "updated_at"},
        "batching": {"mode": mode, "column": "id" if mode == "id" else "updated_at"},
        "batch_size": batch_size,
        "settle_delay_s": 0,
        **extra,
    }  # fmt: skip


def epoch_ms(naive_utc: dt.datetime) -> int:
    return (naive_utc.replace(tzinfo=dt.UTC) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // (
        dt.timedelta(milliseconds=1)
    )
