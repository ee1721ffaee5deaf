"""Backfills replayed by a running poller, without a broker (fakes.py): a pending range is
interleaved with the live batches, published exactly once (a failed commit resumes from the
progress stored with the last committed batch), and a backfill that fails is stored as failed
with its cause while the live loop goes on."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import poller.pipeline.runner as runner_module
from poller.kafka import backfill_state
from poller.ops.metrics import Metrics
from poller.pipeline.backfill import new_request, transactional_id
from poller.pipeline.runner import Poller
from tests.unit.pipeline.fakes import (
    TENANT,
    FakeLog,
    config,
    customers_entity,
    install,
    keys,
    sqlite_source,
)

ROWS = 30
BATCH = 2


def request(log: FakeLog, cfg_url: str, low: str, high: str, **entity: object) -> None:
    """Store a pending backfill request, as `poller backfill` leaves it for a running poller."""
    cfg = config(cfg_url, {"customers": customers_entity(**entity)})
    state = new_request(cfg, "customers", "cursor", low, high, None, "sqlite")
    topic = cfg.kafka.watermark_topic_name(TENANT)
    msg = (topic, backfill_state.key_bytes(TENANT, "customers"), backfill_state.encode(state))
    log.committed.append([msg])
    log.committed_by.append("poller backfill")


def test_a_backfill_interleaves_with_live_batches_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = install(monkeypatch)
    monkeypatch.setattr(runner_module, "MAX_BATCHES_PER_TURN", 3)  # 15 live batches: 5 turns
    url = sqlite_source(
        tmp_path / "source.db",
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT)",
        rows={"customers": [(i, f"Customer {i}") for i in range(1, ROWS + 1)]},
    )
    ent = {"batch_size": BATCH, "settle_delay_s": 0}
    request(log, url, "1", str(ROWS), **ent)
    cfg = config(url, {"customers": customers_entity(**ent)})
    live, backfill = cfg.transactional_id(), transactional_id(cfg)
    log.fail_commits_of[backfill] = {4}  # the 4th backfill batch's commit fails
    Poller(cfg, metrics=Metrics(), stop=threading.Event()).run(once=True)

    topic = cfg.kafka.topic_for("customers", TENANT)
    everything = keys(*range(1, ROWS + 1))
    assert log.rows(topic, live) == everything  # the live stream, once, in order
    assert log.rows(topic, backfill) == everything  # the range, once: nothing lost or doubled
    assert len(log.aborted) == 1 and log.aborted[0][0][1] == keys(7)[0]

    # Interleaved: live batches before, between and after the backfill's.
    order = [by for by in log.committed_by if by in (live, backfill)]
    runs = [by for i, by in enumerate(order) if i == 0 or order[i - 1] != by]
    assert runs[:4] == [live, backfill, live, backfill], runs
    assert order[-1] == live

    # Progress is stored with the rows it covers: each backfill transaction ends with the state
    # after its last row, counting every row so far.
    published = 0
    for by, txn in log.transactions():
        if by != backfill:
            continue
        *rows, (_topic, key, value) = txn
        assert key == backfill_state.key_bytes(TENANT, "customers")
        state = backfill_state.decode(value)
        published += len(rows)
        assert state.rows == published
        if rows:
            assert state.position.cursor == json.loads(rows[-1][1])[1]
    final = log.backfills(TENANT)["customers"]
    assert final.done and final.error is None and final.rows == ROWS
    # The live watermark is the live stream's alone.
    assert log.watermarks(TENANT)["customers"].rows_total == ROWS


def test_a_failing_backfill_is_marked_failed_and_the_live_loop_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = install(monkeypatch)
    url = sqlite_source(
        tmp_path / "source.db",
        "CREATE TABLE customers (id INTEGER PRIMARY KEY, full_name TEXT, born TEXT)",
        rows={
            "customers": [
                (i, f"Customer {i}", "not a date" if i == 3 else "1990-01-02")
                for i in range(1, ROWS + 1)
            ]
        },
    )
    ent: dict[str, object] = {"batch_size": BATCH, "settle_delay_s": 0, "start": 10}
    ent_cfg = customers_entity(**ent)
    ent_cfg["fields"]["birth_date"] = "born"
    request(log, url, "1", "6", **ent)
    cfg = config(url, {"customers": ent_cfg})
    live, backfill = cfg.transactional_id(), transactional_id(cfg)
    Poller(cfg, metrics=Metrics(), stop=threading.Event()).run(once=True)  # no error

    topic = cfg.kafka.topic_for("customers", TENANT)
    assert log.rows(topic, live) == keys(*range(11, ROWS + 1))  # the live loop went on
    assert log.rows(topic, backfill) == keys(1, 2)  # the batch before the bad row
    failed = log.backfills(TENANT)["customers"]
    assert failed.done and failed.rows == 2
    assert failed.error is not None and "BadRowError" in failed.error, failed.error
    assert "birth_date" in failed.error, failed.error
