"""A stock Kafka Connect sink reads the poller's Confluent-format topic: Connect standalone (from
the same Kafka 4.1.1 jars as the local broker), the Debezium JDBC sink and Apicurio's Avro
converter from Maven Central (tests/integration/registry/connect/pom.xml) load the customers
topic into a PostgreSQL table keyed on the Avro key, which then equals the source table."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from bench.peer.connect import (
    LIBS,
    PluginFetchError,
    converter,
    fetch_plugins,
    properties,
    standalone_command,
)
from tests.integration.pipeline.helpers import PEOPLE_DDL, TENANT, execute, run_once
from tests.integration.registry.test_registry_failures import confluent_config, insert_people

pytestmark = pytest.mark.integration

POM = Path(__file__).resolve().parent / "connect" / "pom.xml"
ROWS = 20
EPOCH = dt.datetime(1970, 1, 1)  # the source's naive timestamps are UTC


def plugin_dir() -> Path:
    """The sink and converter jars, fetched once per POM version into the stack cache."""
    try:
        return fetch_plugins(POM, "debezium-jdbc-apicurio")
    except PluginFetchError as exc:
        pytest.fail(str(exc))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sink_rows(url: str) -> list[tuple[object, ...]]:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(
                "SELECT tenant, local_id, first_name, last_name, updated_at "
                "FROM people_sink ORDER BY CAST(local_id AS bigint)"
            )]  # fmt: skip
    except sa.exc.ProgrammingError:
        return []  # the sink has not created its table yet
    finally:
        engine.dispose()


def test_debezium_jdbc_sink_loads_the_topic_into_a_table_equal_to_the_source(
    pg_url: str, kafka_bootstrap: str, prefix: str, registry_url: str, tmp_path: Path
) -> None:
    if not (LIBS / "connect-runtime-4.1.1.jar").exists():
        pytest.fail(f"no Kafka jars in {LIBS}: start the stack with `scripts/services up`")
    plugins = plugin_dir()
    execute(pg_url, *PEOPLE_DDL)
    insert_people(pg_url, range(1, ROWS + 1))
    execute(pg_url, "UPDATE people SET l_name = NULL WHERE id % 3 = 0")
    run_once(confluent_config(pg_url, kafka_bootstrap, prefix, {"url": registry_url}))

    db = make_url(pg_url)
    registry_v2 = registry_url.replace("/apis/ccompat/v7", "/apis/registry/v2")
    worker = properties(tmp_path / "worker.properties", {
        "bootstrap.servers": kafka_bootstrap,
        **converter("key", registry_v2), **converter("value", registry_v2),
        "offset.storage.file.filename": str(tmp_path / "offsets"),
        "plugin.path": str(plugins),
        "plugin.discovery": "service_load",
        "listeners": f"http://127.0.0.1:{free_port()}",
        "consumer.isolation.level": "read_committed",
        "consumer.auto.offset.reset": "earliest",
    })  # fmt: skip
    sink = properties(tmp_path / "sink.properties", {
        "name": f"{prefix}-sink",
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": f"{prefix}.customers",
        "connection.url": f"jdbc:postgresql://{db.host}:{db.port}/{db.database}",
        "connection.username": str(db.username),
        "connection.password": str(db.password),
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "delete.enabled": "true",
        "schema.evolution": "basic",
        "collection.name.format": "people_sink",
    })  # fmt: skip
    log = tmp_path / "connect.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            standalone_command(worker, sink, jvm=("-Xmx384m", "-XX:+UseSerialGC",
                                                  "-XX:TieredStopAtLevel=1")),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while len(rows := sink_rows(pg_url)) < ROWS:
            text = log.read_text(errors="replace")
            if proc.poll() is not None or "Task threw an uncaught" in text:
                pytest.fail(f"Connect failed (exit {proc.poll()}):\n{text[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{len(rows)} of {ROWS} rows after 300 s:\n{text[-4000:]}")
            time.sleep(1)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    # The table equals the source: primary key (tenant, local_id) from the Avro key record; the
    # timestamp-micros field arrives as microseconds (Connect has no micros timestamp type).
    engine = sa.create_engine(pg_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            source = conn.exec_driver_sql(
                "SELECT id, f_name, l_name, updated_at FROM people ORDER BY id"
            ).all()
            pk = (
                conn.exec_driver_sql(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a "
                    "ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                    "WHERE i.indrelid = 'people_sink'::regclass AND i.indisprimary"
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    micros = dt.timedelta(microseconds=1)
    expected = [(TENANT, str(i), f, last, (u - EPOCH) // micros) for i, f, last, u in source]
    assert sink_rows(pg_url) == expected
    # The canonical key record (docs/keys.md): the tenant and the entity's local_id.
    assert sorted(pk) == ["local_id", "tenant"]
