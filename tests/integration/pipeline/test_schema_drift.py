"""Source drift while running: a mapped column dropped or renamed under a running poller stops
it with exit 8 naming the field and the column (no endless retry), on PostgreSQL and MariaDB;
the periodic re-check sets poller_schema_drift."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest

from poller.avro.schemas import load_schema
from poller.config import parse_config
from poller.errors import SchemaMismatchError
from poller.ops.entity_metrics import TenantMetrics
from poller.ops.metrics import Metrics
from poller.pipeline.drift import DriftWatch
from poller.source.query import EntityQuery
from poller.source.reader import make_engine
from tests.integration.pipeline.helpers import (
    PEOPLE_DDL,
    TENANT,
    PollerProcess,
    config,
    execute,
    people_entity,
    read_entity,
    wait_until,
)

pytestmark = pytest.mark.integration
T0 = dt.datetime(2024, 3, 1, 12, 0, 0)


def seed(url: str, n: int) -> None:
    execute(url, *PEOPLE_DDL)
    execute(
        url,
        *(
            f"INSERT INTO people VALUES ({i}, '{TENANT}', 'First {i}', 'Last {i}', "  # noqa: S608
            f"'{T0 + dt.timedelta(seconds=i)}')"
            for i in range(1, n + 1)
        ),
    )


@pytest.mark.parametrize(
    ("backend", "change", "column", "field"),
    [
        ("postgresql", "ALTER TABLE people DROP COLUMN l_name", "l_name", "last_name"),
        (
            "mariadb",
            "ALTER TABLE people RENAME COLUMN f_name TO given_name",
            "f_name",
            "first_name",
        ),
    ],
)
def test_a_mapped_column_dropped_or_renamed_while_running_stops_with_exit_8(
    backend: str,
    change: str,
    column: str,
    field: str,
    prefix: str,
    kafka_bootstrap: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    url: str = request.getfixturevalue("pg_url" if backend == "postgresql" else "mariadb_url")
    seed(url, 3)
    ent = people_entity("id", 100, poll_interval_s=0.5)
    cfg = config(url, TENANT, kafka_bootstrap, prefix, {"customers": ent})
    cfg["source"]["drift_check_interval_s"] = 1
    proc = PollerProcess(cfg, tmp_path, "drift")
    try:
        topic = f"{prefix}.customers"

        def published() -> int:
            try:
                return len(read_entity(kafka_bootstrap, topic))
            except pytest.fail.Exception:
                return 0  # the topic is not there yet

        wait_until(lambda: published() == 3, 90, "3 rows", 0.5, proc)
        execute(url, change)
        started = time.monotonic()
        code = proc.wait(60)
    finally:
        proc.kill()
    log = proc.log()
    assert code == 8, log
    assert time.monotonic() - started < 30
    assert "schema drift" in log and f"field {field!r} (column {column!r})" in log, log
    assert "Traceback" not in log


def test_periodic_check_sets_the_drift_gauge_and_names_the_column(pg_url: str) -> None:
    seed(pg_url, 1)
    raw = config(pg_url, TENANT, "127.0.0.1:1", "unused", {"customers": people_entity("id", 10)})
    raw["source"]["drift_check_interval_s"] = 0.2
    cfg = parse_config(raw)
    engine = make_engine(cfg.source)
    schema = load_schema("customers")
    ent = cfg.entities["customers"]
    query = EntityQuery(
        ent, cfg.source, TENANT, schema.field_names, engine.dialect, name="customers"
    )
    metrics = Metrics()
    meters = TenantMetrics(metrics, TENANT, ["customers"])
    watch = DriftWatch(cfg, engine, meters, {"customers": schema}, {"customers": query})

    def gauge() -> float | None:
        return metrics.registry.get_sample_value(
            "poller_schema_drift", {"tenant": TENANT, "entity": "customers"}
        )

    try:
        watch.check_due()  # not due yet
        time.sleep(0.3)
        watch.check_due()  # due: the source fits
        assert gauge() == 0
        execute(pg_url, "ALTER TABLE people ALTER COLUMN updated_at TYPE text")
        execute(pg_url, "ALTER TABLE people RENAME COLUMN l_name TO surname")
        time.sleep(0.3)
        with pytest.raises(SchemaMismatchError) as info:
            watch.check_due()
        assert gauge() == 2
        text = str(info.value)
        assert "field 'last_name' (column 'l_name')" in text and "not found" in text, text
        assert "field 'updated_at' (column 'updated_at')" in text, text
        assert ":poller@" not in text and ":***@" in text  # the URL, password hidden
    finally:
        engine.dispose()
