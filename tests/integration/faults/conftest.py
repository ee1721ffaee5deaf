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

import contextlib
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import pytest
import sqlalchemy as sa
import yaml
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from sqlalchemy.pool import NullPool

from poller.avro import Decoder
from poller.config import KafkaConfig
from poller.errors import PollerError
from poller.watermark import Watermark
from poller.watermark import load as load_watermarks
from tests.integration.conftest import REPO_ROOT, KafkaService

T = TypeVar("T")

SEED = int(os.environ.get("POLLER_FAULT_SEED", "20240611"))
UTC = dt.UTC

# Where `.venv/bin/poller` lives: next to the interpreter running the tests.
POLLER_BIN = Path(sys.executable).with_name("poller")


def poller_argv(*args: str) -> list[str]:
    if not POLLER_BIN.exists():
        pytest.fail(f"{POLLER_BIN} not found: install the project (`make venv`)", pytrace=False)
    return [str(POLLER_BIN), *args]


def free_port() -> int:
    """A TCP port nothing listens on right now (also used as a 'closed port')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.2,
    watch: Sequence[PollerProcess] = (),
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds, or
    as soon as a watched poller process exits (with its log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for proc in watch:
            if not proc.alive():
                pytest.fail(f"while waiting for {what}: {proc.describe()}")
        if time.monotonic() > deadline:
            extra = "".join(f"\n{p.describe()}" for p in watch)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


# ------------------------------------------------------------------------------- databases


@dataclass(frozen=True)
class SourceRow:
    """What the topic must hold for one source row (keyed by local_id): decoded field values."""

    fields: Mapping[str, object]


class SourceDB:
    """One test database (the fresh one of `pg_url` / `mariadb_url`), autocommit, no pool."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args=bounded_connect_args(url),
        )
        self.dialect = self.engine.dialect.name
        self.database = self.engine.url.database or ""

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def execute(self, *statements: str, params: Mapping[str, object] | None = None) -> None:
        with self.engine.connect() as conn:
            for stmt in statements:
                conn.execute(sa.text(stmt), dict(params or {}))

    def rows(self, sql: str, params: Mapping[str, object] | None = None) -> list[tuple[Any, ...]]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), dict(params or {}))]

    def scalar(self, sql: str, params: Mapping[str, object] | None = None) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), dict(params or {})).scalar()

    # -- the customers table ------------------------------------------------------------------

    def create_customers(self) -> None:
        if self.is_postgres:
            self.execute(
                "CREATE TABLE customers (id bigint PRIMARY KEY, full_name text NOT NULL, "
                "email text, birth_date date, updated_at timestamp(6) NOT NULL)",
                "CREATE INDEX customers_updated ON customers (updated_at, id)",
            )
        else:
            self.execute(
                "CREATE TABLE customers (id BIGINT PRIMARY KEY, full_name VARCHAR(100) NOT NULL, "
                "email VARCHAR(100), birth_date DATE, updated_at DATETIME(6) NOT NULL, "
                "KEY customers_updated (updated_at, id))"
            )

    def seed_customers(self, n: int, first: int = 1, per_second: int = 7) -> None:
        """Rows `first`..`first+n-1`, `per_second` rows sharing each updated_at value (so
        batch boundaries fall inside runs of equal cursors). One INSERT, server-side."""
        last = first + n - 1
        if self.is_postgres:
            self.execute(
                "INSERT INTO customers (id, full_name, email, birth_date, updated_at) "
                "SELECT g, 'Customer ' || g || ' v1', 'c' || g || '@example.com', "
                "date '1950-01-01' + (g % 20000)::int, "
                "timestamp '2024-01-01' + (g / :per) * interval '1 second' "
                "FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g",
                params={"first": first, "last": last, "per": per_second},
            )
        else:
            # seq_<a>_to_<b> is MariaDB's SEQUENCE engine; a and b are ints (no injection).
            sql = (
                "INSERT INTO customers (id, full_name, email, birth_date, updated_at) "  # noqa: S608
                "SELECT seq, CONCAT('Customer ', seq, ' v1'), CONCAT('c', seq, '@example.com'), "
                "DATE '1950-01-01' + INTERVAL (seq MOD 20000) DAY, "
                "TIMESTAMP '2024-01-01 00:00:00' + INTERVAL (seq DIV :per) SECOND "
                f"FROM seq_{int(first)}_to_{int(last)}"
            )
            self.execute(sql, params={"per": per_second})

    def customers(self) -> dict[str, SourceRow]:
        """local_id -> the fields the topic must carry for it (the version columns)."""
        return {
            str(r[0]): SourceRow({"full_name": r[1], "updated_at": r[2].replace(tzinfo=UTC)})
            for r in self.rows("SELECT id, full_name, updated_at FROM customers")
        }

    def max_cursor(self, column: str, table: str = "customers") -> Any:
        check_name(column)
        check_name(table)
        return self.scalar(f"SELECT max({column}) FROM {table}")  # noqa: S608 - checked names

    # -- the poller's sessions ------------------------------------------------------------------

    def _sessions(self, conn: sa.Connection, reading: bool) -> list[int]:
        """Ids of every other session on this test's database: the poller's (the test's own
        connections are not pooled, so none of them is idle here). `reading`: only those in
        the middle of reading a batch: PostgreSQL's batch cursor (the reader names it
        poller_batch) open, MariaDB sending rows."""
        if self.is_postgres:
            sql = (
                "SELECT pid FROM pg_stat_activity WHERE datname = :db "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend' "
                "AND (NOT :reading OR (query LIKE '%poller_batch%' "
                "AND state IN ('active', 'idle in transaction')))"
            )
        else:
            sql = (
                "SELECT id FROM information_schema.processlist WHERE db = :db "
                "AND id <> CONNECTION_ID() AND command <> 'Killed' "
                "AND (NOT :reading OR state IN ('Sending data', 'Writing to net'))"
            )
        params = {"db": self.database, "reading": reading}
        return [int(r[0]) for r in conn.execute(sa.text(sql), params)]

    def kill_poller_sessions(self, reading: bool = False) -> int:
        """Terminate (PostgreSQL) / KILL (MariaDB) the poller's sessions (`reading`: those in
        the middle of a read); how many went."""
        killed = 0
        with self.engine.connect() as conn:
            for sid in self._sessions(conn, reading):
                if self.is_postgres:
                    ok = conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": sid})
                    killed += bool(ok.scalar())
                else:
                    try:
                        conn.execute(sa.text(f"KILL {int(sid)}"))
                        killed += 1
                    except sa.exc.DBAPIError:  # it ended by itself meanwhile
                        pass
        return killed

    def close(self) -> None:
        self.engine.dispose()


def bounded_connect_args(url: str) -> dict[str, Any]:
    """Connect and statement time limits, so a test never hangs on a stuck database."""
    if sa.make_url(url).get_backend_name() == "postgresql":
        return {"connect_timeout": 10, "options": "-c statement_timeout=60000"}
    return {"connect_timeout": 10, "read_timeout": 60, "write_timeout": 60}


def check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return name


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


def customers_entity(mode: str = "id", batch_size: int = 5000, **overrides: Any) -> dict[str, Any]:
    """The `customers` entity over `SourceDB.create_customers`' table."""
    batching: dict[str, Any] = {
        "id": {"mode": "id", "column": "id"},
        "timestamp": {"mode": "timestamp", "column": "updated_at"},
        "timestamp+id": {"mode": "timestamp+id", "column": "updated_at", "id_column": "id"},
    }[mode]
    entity: dict[str, Any] = {
        "table": "customers",
        "key": "id",
        "fields": {
            "local_id": "id",
            "full_name": "full_name",
            "email": "email",
            "birth_date": "birth_date",
            "updated_at": "updated_at",
        },
        "batching": batching,
        "batch_size": batch_size,
        "poll_interval_s": 1,
    }
    entity.update(overrides)
    return entity


# --------------------------------------------------------------------------------- kafka


@dataclass(frozen=True)
class Record:
    key: bytes
    value: bytes | None
    partition: int
    offset: int
    headers: dict[str, bytes]


def _consumer(bootstrap: str, isolation: str = "read_committed") -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"fault-verify-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "fetch.max.bytes": 50_000_000,
            "log_level": 2,  # quiet while a test has the broker down; errors still raise
        }
    )


def end_offsets(bootstrap: str, topic: str) -> dict[int, int] | None:
    """High watermark per partition, or None if the topic does not exist."""
    consumer = _consumer(bootstrap)
    try:
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None:
            return None
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
            for p in meta.partitions
        }
    finally:
        consumer.close()


def read_committed(
    bootstrap: str, topic: str, idle_timeout_s: float = 30.0, isolation: str = "read_committed"
) -> list[Record]:
    """Every committed message of `topic`, from the beginning to the end of each partition
    (with `isolation="read_uncommitted"`: aborted ones too).

    Unlike `poller.tail.read_topic` it never returns early: if a partition's end is not
    reached (no progress for `idle_timeout_s`) the test fails.
    """
    consumer = _consumer(bootstrap, isolation)
    out: list[Record] = []
    try:
        meta = consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None:
            pytest.fail(f"topic {topic} does not exist ({meta and meta.error})")
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)[1]
            for p in meta.partitions
        }
        pending = {p for p, high in ends.items() if high > 0}
        if not pending:
            return out
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(pending)])
        last_progress = time.monotonic()
        while pending:
            if time.monotonic() - last_progress > idle_timeout_s:
                pytest.fail(
                    f"reading {topic}: partitions {sorted(pending)} did not reach their end "
                    f"(ends {ends}) within {idle_timeout_s:.0f}s of the last message; an open "
                    f"transaction may hold the last stable offset ({len(out)} messages read)"
                )
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    pytest.fail(f"reading {topic}: {err.str()}")
                last_progress = time.monotonic()
                out.append(
                    Record(
                        key=_as_bytes(msg.key()),
                        value=msg.value(),
                        partition=msg.partition() or 0,
                        offset=msg.offset() or 0,
                        headers=_headers(msg.headers()),
                    )
                )
    finally:
        consumer.close()
    return out


def _as_bytes(v: str | bytes | None) -> bytes:
    return v.encode() if isinstance(v, str) else (v or b"")


def _headers(raw: Mapping[str, str | bytes | None] | Sequence[Any] | None) -> dict[str, bytes]:
    pairs = raw.items() if isinstance(raw, Mapping) else (raw or [])
    return {str(k): _as_bytes(v) for k, v in pairs}


class TopicEnds:
    """Cheap probes of a topic's ends, summed over its partitions (0 until it exists).

    `committed(topic)` is the last stable offset (what a read_committed consumer reaches): the
    watermark topic's grows by two (record + commit marker) per committed batch.
    `in_flight(topic)` is true while a transaction has written to the topic and is still open
    (high watermark beyond the last stable offset).
    """

    def __init__(self, bootstrap: str) -> None:
        self._committed = _consumer(bootstrap)
        self._uncommitted = _consumer(bootstrap, "read_uncommitted")

    def _end(self, consumer: Consumer, topic: str) -> int:
        try:
            meta = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if meta is None or meta.error is not None:
                return 0
            return sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                for p in meta.partitions
            )
        except KafkaException:
            return 0

    def committed(self, topic: str) -> int:
        return self._end(self._committed, topic)

    def in_flight(self, topic: str) -> bool:
        return self._end(self._uncommitted, topic) > self._end(self._committed, topic)

    def close(self) -> None:
        self._committed.close()
        self._uncommitted.close()


# ------------------------------------------------------------------------------- verifier

_DECODER: Decoder | None = None


def decoder() -> Decoder:
    global _DECODER
    if _DECODER is None:
        _DECODER = Decoder()
    return _DECODER


@dataclass
class Delivery:
    """An entity topic decoded: local_id -> list of decoded values (one per message)."""

    by_id: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.by_id.values())


def decode_topic(records: Sequence[Record], tenant: str, entity: str) -> Delivery:
    out = Delivery()
    dec = decoder()
    for r in records:
        if r.value is None:
            out.problems.append(f"tombstone at {r.partition}/{r.offset}")
            continue
        name, value = dec.decode(r.value)
        local_id = str(value["local_id"])
        key = json.loads(r.key)
        if name != entity:
            out.problems.append(f"{r.partition}/{r.offset}: a {name} message in {entity}'s topic")
        if not (
            isinstance(key, list) and len(key) == 2 and key[0] == tenant and str(key[1]) == local_id
        ):
            out.problems.append(f"{r.partition}/{r.offset}: key {r.key!r} for local_id {local_id}")
        if r.headers.get("tenant") != tenant.encode() or r.headers.get("entity") != entity.encode():
            out.problems.append(f"{r.partition}/{r.offset}: headers {r.headers}")
        out.by_id.setdefault(local_id, []).append(value)
    return out


def _sample(items: Sequence[object], n: int = 8) -> str:
    shown = ", ".join(map(str, list(items)[:n]))
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


def compare(delivery: Delivery, expected: Mapping[str, SourceRow]) -> list[str]:
    """Every problem with `delivery` against `expected` (empty: exactly once, versions equal)."""
    problems = list(delivery.problems)
    dupes = sorted((k for k, v in delivery.by_id.items() if len(v) > 1), key=_id_order)
    missing = sorted(set(expected) - set(delivery.by_id), key=_id_order)
    extra = sorted(set(delivery.by_id) - set(expected), key=_id_order)
    if dupes:
        counts = Counter(len(delivery.by_id[k]) for k in dupes)
        problems.append(
            f"{len(dupes)} keys delivered more than once (copies: {dict(counts)}): {_sample(dupes)}"
        )
    if missing:
        problems.append(f"{len(missing)} source keys missing: {_sample(missing)}")
    if extra:
        problems.append(f"{len(extra)} keys not in the source: {_sample(extra)}")
    wrong = []
    for local_id, want in expected.items():
        for got in delivery.by_id.get(local_id, []):
            diff = {f: (got.get(f), v) for f, v in want.fields.items() if got.get(f) != v}
            if diff:
                wrong.append(f"{local_id}: {diff}")
    if wrong:
        problems.append(
            f"{len(wrong)} messages differ from the source (got, want): {_sample(wrong, 4)}"
        )
    return problems


def _id_order(k: str) -> tuple[int, str]:
    return (int(k), "") if k.isdigit() else (1 << 62, k)


# ------------------------------------------------------------------------------- processes


class PollerProcess:
    """One `poller ...` subprocess, stdout and stderr in one log file."""

    def __init__(self, argv: list[str], log_path: Path, label: str) -> None:
        self.argv = argv
        self.label = label
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        self.ended: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        if self.proc.poll() is None:
            return True
        self._closed()
        return False

    def _closed(self) -> None:
        if self.ended is None:
            self.ended = time.monotonic()
        if not self._log.closed:
            self._log.close()

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a power cut of the process."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._closed()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """The exit code; fails the test (and kills the process) after `timeout` seconds."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"{self.label} did not exit within {timeout:.0f}s; killed.\n{self.describe()}"
            )
        self._closed()
        return rc

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def describe(self, lines: int = 40) -> str:
        state = "running" if self.proc.poll() is None else f"exit code {self.proc.returncode}"
        tail = "\n".join(self.log().splitlines()[-lines:])
        return (
            f"--- {self.label} (pid {self.pid}, {state}, {self.elapsed:.1f}s, "
            f"log {self.log_path}):\n{tail}\n---"
        )


# -------------------------------------------------------------------------------- scenario


class Scenario:
    """One test's tenant, topic prefix, config files and poller processes."""

    def __init__(self, tmp: Path, bootstrap: str, name: str) -> None:
        token = uuid.uuid4().hex[:10]
        self.dir = tmp
        self.bootstrap = bootstrap
        self.tenant = f"fault-{name}-{token}"
        self.prefix = f"fault_{token}"
        self.procs: list[PollerProcess] = []
        self.rng = random.Random(f"{SEED}:{name}")
        self._ends: TopicEnds | None = None

    # -- names -------------------------------------------------------------------------------

    def topic(self, entity: str) -> str:
        return f"{self.prefix}.{entity}"

    @property
    def watermark_topic(self) -> str:
        return f"{self.prefix}.watermarks"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.prefix}.dead_letter"

    # -- configuration --------------------------------------------------------------------------

    def config_dict(
        self,
        source_url: str,
        entities: Mapping[str, Mapping[str, Any]],
        *,
        bootstrap: str | None = None,
        retry: Mapping[str, Any] | None = None,
        metrics_port: int = 0,
        kafka: Mapping[str, Any] | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "source": {"url": source_url, "connect_timeout_s": 5, **(source or {})},
            "kafka": {
                "bootstrap_servers": bootstrap or self.bootstrap,
                "topic_prefix": self.prefix,
                "topic_partitions": 3,
                "transaction_timeout_s": 30,
                **(kafka or {}),
            },
            "entities": {k: dict(v) for k, v in entities.items()},
            "metrics": {"host": "127.0.0.1", "port": metrics_port},
            "logging": {"format": "text", "level": "INFO"},
            "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 2, **(retry or {})},
        }

    def write_config(self, config: Mapping[str, Any], name: str = "poller.yaml") -> Path:
        path = self.dir / name
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
        return path

    def config(
        self,
        source_url: str,
        entities: Mapping[str, Mapping[str, Any]],
        name: str = "poller.yaml",
        **kw: Any,
    ) -> Path:
        return self.write_config(self.config_dict(source_url, entities, **kw), name)

    # -- processes -------------------------------------------------------------------------------

    def start(self, config: Path, *, once: bool = False, label: str | None = None) -> PollerProcess:
        label = label or f"poller-{len(self.procs) + 1}"
        args = ["run", "--config", str(config)] + (["--once"] if once else [])
        proc = PollerProcess(poller_argv(*args), self.dir / f"{label}.log", label)
        self.procs.append(proc)
        return proc

    def run_once(self, config: Path, timeout: float, label: str | None = None) -> PollerProcess:
        """`poller run --once` to its end; fails unless it exits 0 within `timeout`."""
        proc = self.start(config, once=True, label=label)
        rc = proc.wait(timeout)
        assert rc == 0, f"`run --once` failed:\n{proc.describe()}"
        return proc

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            poller_argv(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            check=False,
        )

    def offsets(self, config: Path) -> dict[str, dict[str, Any]]:
        """`poller offsets show --json`, by entity."""
        out = self.cli("offsets", "show", "--config", str(config), "--json")
        assert out.returncode == 0, f"offsets show failed ({out.returncode}):\n{out.stderr}"
        return {row["entity"]: row for row in json.loads(out.stdout)}

    def kafka_config(self) -> KafkaConfig:
        return KafkaConfig.model_validate(
            {"bootstrap_servers": self.bootstrap, "topic_prefix": self.prefix}
        )

    def stored(self, entity: str) -> Watermark | None:
        """The committed watermark, read in-process (cheap enough to poll)."""
        try:
            found = load_watermarks(
                self.kafka_config(), self.watermark_topic, self.tenant, timeout_s=10
            )
        except PollerError:  # topic not there yet
            return None
        return found.get(entity)

    def wait_for_cursor(
        self, entity: str, cursor: object, timeout: float, watch: Sequence[PollerProcess] = ()
    ) -> Watermark:
        def reached() -> Watermark | None:
            wm = self.stored(entity)
            return wm if wm is not None and wm.position.cursor == cursor else None

        return wait_for(
            reached, timeout, f"{entity}'s watermark to reach {cursor!r}", interval=0.5, watch=watch
        )

    @property
    def ends(self) -> TopicEnds:
        if self._ends is None:
            self._ends = TopicEnds(self.bootstrap)
        return self._ends

    def watermark_high(self) -> int:
        """Committed offsets of the watermark topic so far (2 per committed batch)."""
        return self.ends.committed(self.watermark_topic)

    def wait_for_batches(
        self, batches: int, timeout: float, watch: Sequence[PollerProcess] = ()
    ) -> int:
        """Until `batches` more transactions hit the watermark topic (from now)."""
        start = self.watermark_high()
        goal = start + 2 * batches
        return wait_for(
            lambda: h if (h := self.watermark_high()) >= goal else None,
            timeout,
            f"{batches} more committed batch(es)",
            interval=0.05,
            watch=watch,
        )

    def records(self, entity: str) -> list[Record]:
        return read_committed(self.bootstrap, self.topic(entity))

    def delivery(self, entity: str) -> Delivery:
        return decode_topic(self.records(entity), self.tenant, entity)

    def verify_exactly_once(
        self, entity: str, expected: Mapping[str, SourceRow], delivery: Delivery | None = None
    ) -> Delivery:
        """The entity topic (or `delivery` already read from it) holds each expected row exactly
        once with the expected field values, and nothing else."""
        delivery = delivery or self.delivery(entity)
        problems = compare(delivery, expected)
        assert not problems, (
            f"{entity}: {delivery.count} messages for {len(expected)} source rows, not exactly "
            f"once (seed {SEED}):\n  " + "\n  ".join(problems) + "\n" + self.logs_tail()
        )
        return delivery

    def logs_tail(self, lines: int = 15) -> str:
        return "\n".join(p.describe(lines) for p in self.procs[-3:])

    def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.kill()
        if self._ends is not None:
            self._ends.close()


@pytest.fixture
def scenario(
    request: pytest.FixtureRequest, tmp_path: Path, kafka_bootstrap: str
) -> Iterator[Scenario]:
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:30]
    sc = Scenario(tmp_path, kafka_bootstrap, name)
    yield sc
    sc.close()


# ---------------------------------------------------------------------------------- metrics


def scrape(port: int, timeout: float = 5.0) -> dict[str, float]:
    """The poller's /metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def metric(samples: Mapping[str, float], name: str, **labels: str) -> float | None:
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            return value
    return None


# -------------------------------------------------------------------------- service control


class PostgresServer:
    """Stops and starts the real PostgreSQL cluster (pg_ctlcluster)."""

    def __init__(self) -> None:
        versions = (
            sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v) if v.isdigit() else 0)
            if os.path.isdir("/usr/lib/postgresql")
            else []
        )
        if not versions or shutil.which("pg_ctlcluster") is None:
            pytest.fail(
                "pg_ctlcluster / /usr/lib/postgresql not found; start the stack with "
                "`scripts/services up postgres`",
                pytrace=False,
            )
        self.version = versions[-1]

    def _ctl(self, action: str, *extra: str) -> None:
        proc = subprocess.run(
            ["pg_ctlcluster", self.version, "main", action, *extra],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"pg_ctlcluster {self.version} main {action} exited {proc.returncode}: "
                f"{proc.stdout}{proc.stderr}"
            )

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")
        wait_for(lambda: not port_open("127.0.0.1", 5432), 30, "PostgreSQL to stop listening")

    def start(self) -> None:
        self._ctl("start")
        wait_for(self.ready, 60, "PostgreSQL to accept connections", interval=0.3)

    @staticmethod
    def ready() -> bool:
        return (
            subprocess.run(
                ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"], timeout=10, check=False
            ).returncode
            == 0
        )

    def ensure_up(self) -> None:
        if not self.ready():
            self.start()


@pytest.fixture
def postgres_server(pg_url: str) -> Iterator[PostgresServer]:
    """The PostgreSQL server, started again at teardown whatever happened (before `pg_url`
    drops the test database)."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.ensure_up()


@pytest.fixture
def kafka_restart(kafka_service: KafkaService, kafka_bootstrap: str) -> Iterator[KafkaService]:
    """`kafka_service` (stop/start), with the broker brought back at teardown in any case."""
    try:
        yield kafka_service
    finally:
        host, _, port = kafka_bootstrap.rpartition(":")
        if not port_open(host, int(port)):
            kafka_service.start()
