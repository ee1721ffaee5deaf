"""An operator looks right after a poller was killed mid-commit.

A poller SIGKILLed after it wrote its watermark record and before its commit leaves that
transaction open until a poller of the tenant starts again (its init_transactions aborts it)
or transaction.timeout.ms passes. `status` and `watermarks show` used to wait for the record
and then fail ("an open transaction holds back a watermark"): exactly when the operator needs
them. They show the last committed watermark and say that a newer one is unsettled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import KafkaException, Producer

from poller.batch import Position
from poller.config import parse_config
from poller.kafka import watermark
from tests.integration.cli.test_operator import inproc
from tests.integration.pipeline.helpers import (
    PEOPLE_DDL,
    TENANT,
    config,
    execute,
    people_entity,
    run_once,
    stored_watermarks,
)

pytestmark = pytest.mark.integration


def ran_once(pg_url: str, prefix: str, kafka_bootstrap: str, tmp_path: Path) -> dict[str, Any]:
    """60 customers of the tenant copied by a `run --once`; the config at tmp_path/c.yaml."""
    execute(
        pg_url,
        *PEOPLE_DDL,
        "INSERT INTO people SELECT g, :t, 'F' || g, NULL, "
        "timestamp '2024-02-01' + g * interval '1 minute' FROM generate_series(1, 60) g",
        params={"t": TENANT},
    )
    cfg = config(pg_url, TENANT, kafka_bootstrap, prefix,
                 {"customers": people_entity("id", 50)}, tenant_column="user_id")  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    run_once(cfg)
    return cfg


def _killed_mid_commit(cfg: dict[str, Any], newer: watermark.Watermark) -> Producer:
    """The state a poller killed between its watermark record and its commit leaves: a
    transaction of the tenant's transactional.id, open, with the newer watermark in it."""
    app = parse_config(cfg)
    p = Producer(
        {
            "bootstrap.servers": app.kafka.bootstrap_servers,
            "transactional.id": app.transactional_id(),
        }
    )
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(
        app.kafka.watermark_topic_name(TENANT),
        watermark.encode(newer),
        watermark.key_bytes(TENANT, "customers"),
    )
    assert p.flush(30) == 0
    return p


def test_status_and_watermarks_show_name_a_watermark_in_a_killed_commit(
    pg_url: str, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    cfg = ran_once(pg_url, prefix, kafka_bootstrap, tmp_path)
    committed = stored_watermarks(kafka_bootstrap, prefix, TENANT)["customers"]
    assert committed.position.cursor == 60

    newer = dataclasses.replace(committed, position=Position(999, 999))
    open_txn = _killed_mid_commit(cfg, newer)
    try:
        status = inproc(tmp_path, "status", "--config", "c.yaml", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        (row,) = json.loads(status.stdout)["entities"]
        assert (row["cursor"], row["watermark_unsettled"]) == (60, True), row
        table = inproc(tmp_path, "status", "--config", "c.yaml")
        assert table.returncode == 0, table.stdout + table.stderr
        assert "60 *" in table.stdout and "customers: the last committed watermark" in table.stdout

        shown = inproc(tmp_path, "watermarks", "show", "--config", "c.yaml", "--json")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        (mark,) = json.loads(shown.stdout)
        assert (mark["cursor"], mark["unsettled"]) == (60, True), mark
        assert "a newer record lies behind a Kafka transaction" in shown.stderr

        # The next run fences the transactional.id, which aborts the killed commit: its
        # watermark is never taken, and the state is settled again.
        run_once(cfg)
    finally:
        # Fenced by the run above, as a restarted poller fences a killed one.
        with contextlib.suppress(KafkaException):
            open_txn.abort_transaction(10)
    after = inproc(tmp_path, "status", "--config", "c.yaml", "--json")
    assert after.returncode == 0, after.stdout + after.stderr
    (row,) = json.loads(after.stdout)["entities"]
    assert (row["cursor"], row["watermark_unsettled"]) == (60, False), row


def test_watermarks_reset_right_after_a_killed_commit(
    pg_url: str, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The reset fences the killed poller's transaction before it reads the watermark it
    replaces; it used to read first, and waited for that transaction until it failed."""
    cfg = ran_once(pg_url, prefix, kafka_bootstrap, tmp_path)
    committed = stored_watermarks(kafka_bootstrap, prefix, TENANT)["customers"]
    open_txn = _killed_mid_commit(cfg, dataclasses.replace(committed, position=Position(999, 999)))
    try:
        done = inproc(tmp_path, "watermarks", "reset", "--config", "c.yaml",
                      "--entity", "customers", "--to", "30", "--yes")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    finally:
        with contextlib.suppress(KafkaException):
            open_txn.abort_transaction(10)
    wm = stored_watermarks(kafka_bootstrap, prefix, TENANT)["customers"]
    assert (wm.position.cursor, wm.rows_total) == (30, 60), wm
