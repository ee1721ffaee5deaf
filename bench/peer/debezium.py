"""One Debezium run: Connect standalone (stock JVM settings of connect-standalone.sh) with
Debezium's PostgreSQL connector (snapshot.mode initial, pgoutput) and Apicurio's AvroConverter
(Confluent framing, schemas registered in the shared registry), first the initial snapshot of
the table, then a catch-up of rows inserted (one transaction) while it streams."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.peer import broker
from bench.peer.cluster import TABLE, LogicalPostgres, free_port
from bench.peer.connect import converter, properties, standalone_command
from bench.peer.figures import Phase, ToolRun
from bench.peer.watch import Watched

VERSION = "3.6.1.Final"  # bench/peer/pom.xml
POM = Path(__file__).resolve().parent / "pom.xml"
# connect-standalone.sh's heap and kafka-run-class.sh's JVM options: what a user runs.
JVM = ("-Xms256M", "-Xmx2G", "-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
       "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent",
       "-XX:MaxInlineLevel=15", "-Djava.awt.headless=true")  # fmt: skip
LAST_LOG = Path(tempfile.gettempdir()) / "bench-peer-connect.log"
FAILED = ("Task threw an uncaught", "is being killed and will not recover")


@dataclass(frozen=True)
class Setup:
    bootstrap: str
    registry_v2: str  # Apicurio's own API (the converter talks it; the framing is Confluent's)
    plugins: Path
    rest_ports: range
    timeout_s: float = 3600


def connector_config(name: str, pg: LogicalPostgres) -> dict[str, str]:
    return {
        "name": name,
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "snapshot.mode": "initial",
        "database.hostname": "127.0.0.1",
        "database.port": str(pg.port),
        "database.user": "poller",
        "database.password": "poller",
        "database.dbname": "poller_bench",
        "topic.prefix": name,
        "table.include.list": f"public.{TABLE}",
        "column.exclude.list": f"public.{TABLE}.card_no",  # the poller does not read it either
        "slot.name": name,
        "slot.drop.on.stop": "true",
        "publication.name": name,
        "publication.autocreate.mode": "filtered",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
    }


def _wait_rows(w: Watched, counter: broker.TopicCounter, topic: str, want: int,
               deadline: float) -> tuple[float, float]:  # fmt: skip
    """Until the topic holds `want` records: (time of the first new record, time of the last)."""
    base = counter.records(topic)
    first: float | None = None
    while True:
        if not w.sample() or any(s in w.tail(200) for s in FAILED):
            raise RuntimeError(f"Connect failed (exit {w.proc.returncode}):\n{w.tail()}")
        have = counter.records(topic)
        now = time.time()
        if have > base and first is None:
            first = now
        if have >= want:
            if have > want:
                raise RuntimeError(f"{topic} holds {have} records, expected {want}")
            return first or now, now
        if time.monotonic() > deadline:
            raise RuntimeError(f"{have} of {want} records in {topic} in time:\n{w.tail()}")
        time.sleep(0.2)


def run(setup: Setup, pg: LogicalPostgres, rows: int, catch_up: int) -> ToolRun:
    name = f"peer_{uuid.uuid4().hex[:10]}"  # also a valid Avro namespace, slot and publication
    topic = f"{name}.public.{TABLE}"
    counter = broker.TopicCounter(setup.bootstrap)
    deadline = time.monotonic() + setup.timeout_s
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp_name:
        tmp = Path(tmp_name)
        reg = setup.registry_v2
        worker = properties(tmp / "worker.properties", {
            "bootstrap.servers": setup.bootstrap,
            **converter("key", reg), **converter("value", reg),
            "key.converter.apicurio.registry.auto-register": "true",
            "value.converter.apicurio.registry.auto-register": "true",
            "offset.storage.file.filename": str(tmp / "offsets"),
            "plugin.path": str(setup.plugins),
            "plugin.discovery": "service_load",
            "listeners": f"http://127.0.0.1:{free_port(setup.rest_ports)}",
        })  # fmt: skip
        conn = properties(tmp / "connector.properties", connector_config(name, pg))
        w: Watched | None = None
        try:
            db0, t0 = pg.cpu_s(), time.time()
            w = Watched(standalone_command(worker, conn, jvm=JVM), tmp / "connect.log")
            first, last = _wait_rows(w, counter, topic, rows, deadline)
            snap = Phase(rows, last - first, last - t0,
                         {"connect": w.cpu_s(), "database": pg.cpu_s() - db0})  # fmt: skip
            time.sleep(2)  # let the task move from snapshot to streaming before the inserts
            pg.insert(rows + 1, catch_up)
            cpu1, db1, t1 = w.cpu_s(), pg.cpu_s(), time.time()
            first, last = _wait_rows(w, counter, topic, rows + catch_up, deadline)
            catch = Phase(catch_up, last - first, last - t1,
                          {"connect": w.cpu_s() - cpu1, "database": pg.cpu_s() - db1})  # fmt: skip
            peak = w.peak_rss_mb
            w.stop()
            size = broker.topic_bytes(setup.bootstrap, topic)
        finally:
            if w is not None:
                w.stop()
                shutil.copyfile(w.log, LAST_LOG)  # to read after the run (it is not cleaned)
            counter.close()
            broker.delete(setup.bootstrap, [topic])  # also after a failed run: it is big
    return ToolRun("debezium", snap, catch, peak, size)
