"""The records of the watermark topic: heartbeats in the watermark, records written before a
field existed, and the backfill state kept next to the watermarks."""

from __future__ import annotations

import datetime as dt
import io
import json
from decimal import Decimal

import fastavro

from poller.batch import BEGINNING, Position
from poller.kafka import backfill_state, watermark
from poller.kafka.backfill_state import BackfillState

NOW = dt.datetime(2026, 11, 30, 7, 0, 0, 123456, tzinfo=dt.UTC)


def test_a_heartbeat_round_trips_and_an_old_record_reads_as_no_heartbeat() -> None:
    beat = watermark.Watermark("acme", "customers", "timestamp",
                               Position(dt.datetime(2024, 1, 1, 9), 42), 42, NOW,
                               heartbeat_at=NOW - dt.timedelta(seconds=1))  # fmt: skip
    assert watermark.decode(watermark.encode(beat)) == beat

    # A record of the first release: none of the fields added since.
    first_release = watermark._OLDER_WRITERS[-1]
    names = [f["name"] for f in first_release["fields"]]
    assert "heartbeat_at" not in names and names[-1] == "updated_at"
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, first_release, {
        "tenant": "acme", "entity": "customers", "mode": "id",
        "cursor": {"kind": "int", "text": "7"}, "key": None,
        "rows_total": 7, "updated_at": NOW,
    })  # fmt: skip
    old = watermark.decode(buf.getvalue())
    assert (old.position, old.rows_total, old.heartbeat_at) == (Position(7, None), 7, None)


def test_backfill_state_round_trips_with_exact_types() -> None:
    state = BackfillState(
        tenant="acme", entity="receipts", by="cursor",
        low=dt.datetime(2024, 1, 1), high=dt.datetime(2024, 1, 31, 23, 59, 59, 999999),
        where="store_id = 7", position=Position(dt.datetime(2024, 1, 5, 10), 1042),
        rows=5000, done=False, requested_at=NOW, updated_at=NOW,
    )  # fmt: skip
    assert backfill_state.decode(backfill_state.encode(state)) == state
    by_key = BackfillState(
        tenant="acme", entity="products", by="key", low=Decimal("10.5"), high="zz",
        where=None, position=BEGINNING, rows=0, done=True, requested_at=NOW, updated_at=NOW,
    )  # fmt: skip
    assert backfill_state.decode(backfill_state.encode(by_key)) == by_key
    advanced = state.advanced(Position(dt.datetime(2024, 1, 6), 7), 300, done=True)
    assert (advanced.rows, advanced.done, advanced.same_request(state)) == (5300, True, True)
    assert not state.same_request(by_key)


def test_backfill_and_watermark_keys_differ_in_length() -> None:
    # The loader tells them apart by the key: two elements a watermark, three a backfill.
    assert json.loads(watermark.key_bytes("ac\u00e9", "e")) == ["ac\u00e9", "e"]
    assert json.loads(backfill_state.key_bytes("ac\u00e9", "e")) == ["ac\u00e9", "e", "backfill"]


def test_a_failed_backfill_round_trips_with_its_cause_and_is_not_pending() -> None:
    state = BackfillState(
        tenant="acme", entity="receipts", by="cursor", low=1, high=9, where=None,
        position=Position(4, None), rows=4, done=False, requested_at=NOW, updated_at=NOW,
    )  # fmt: skip
    failed = state.failed("BadRowError: the encoded row is 3200000 bytes")
    record = json.loads(backfill_state.encode(failed))
    assert (record["state"], record["error"]) == ("failed", failed.error)
    back = backfill_state.decode(backfill_state.encode(failed))
    assert back == failed and back.done and back.position == Position(4, None)
    assert "error" not in json.loads(backfill_state.encode(state))  # older readers unchanged
