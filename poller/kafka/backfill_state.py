"""The state of a ranged backfill, kept in the watermark topic next to the live watermarks.

Key `["<tenant>","<entity>","backfill"]` (a live watermark's key has two elements), value
compact JSON. It is written in the same transaction as the rows it covers, so a killed
backfill resumes right after its last committed batch; a finished one stays as `done` (what
`poller status` shows) until the next backfill of that entity replaces it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from poller.batch import Position
from poller.config import KafkaConfig
from poller.errors import OpenTransactionError
from poller.kafka import watermark
from poller.kafka.watermark import Watermark, _typed, _untyped

By = Literal["cursor", "key"]
BACKFILL = "backfill"


def key_bytes(tenant: str, entity: str) -> bytes:
    key = [tenant, entity, BACKFILL]
    return json.dumps(key, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class BackfillState:
    tenant: str
    entity: str
    by: By
    low: object  # --from, inclusive
    high: object  # --to, inclusive
    where: str | None
    position: Position  # after the last row published; BEGINNING before the first
    rows: int
    done: bool
    requested_at: dt.datetime
    updated_at: dt.datetime
    error: str | None = None  # set when the backfill failed (then `done` too): its cause

    def failed(self, cause: str) -> BackfillState:
        """Stopped for good (a bad row, a condition the database refuses): not replayed."""
        return replace(self, done=True, error=cause, updated_at=dt.datetime.now(dt.UTC))

    def same_request(self, other: BackfillState) -> bool:
        return (self.entity, self.by, self.low, self.high, self.where) == (
            other.entity,
            other.by,
            other.low,
            other.high,
            other.where,
        )

    def advanced(self, position: Position, rows: int, done: bool) -> BackfillState:
        return replace(
            self,
            position=position,
            rows=self.rows + rows,
            done=done,
            updated_at=dt.datetime.now(dt.UTC),
        )

    def describe(self) -> str:
        where = f" where {self.where}" if self.where else ""
        return f"{self.entity} by {self.by} from {self.low} to {self.high}{where}"


def encode(state: BackfillState) -> bytes:
    record: dict[str, Any] = {
        "tenant": state.tenant,
        "entity": state.entity,
        "by": state.by,
        "from": _typed(state.low),
        "to": _typed(state.high),
        "where": state.where,
        "cursor": _typed(state.position.cursor),
        "key": _typed(state.position.key),
        "rows": state.rows,
        "state": "failed" if state.error else "done" if state.done else "pending",
        "requested_at": state.requested_at.isoformat(),
        "updated_at": state.updated_at.isoformat(),
    }
    if state.error:
        record["error"] = state.error
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()


def decode(payload: bytes) -> BackfillState:
    rec: dict[str, Any] = json.loads(payload)
    by = rec["by"]
    if by not in ("cursor", "key"):
        raise ValueError(f"unknown backfill kind {by!r}")
    return BackfillState(
        tenant=rec["tenant"],
        entity=rec["entity"],
        by=by,
        low=_untyped(rec["from"]),
        high=_untyped(rec["to"]),
        where=rec["where"],
        position=Position(_untyped(rec["cursor"]), _untyped(rec["key"])),
        rows=int(rec["rows"]),
        done=rec["state"] in ("done", "failed"),
        requested_at=dt.datetime.fromisoformat(rec["requested_at"]),
        updated_at=dt.datetime.fromisoformat(rec["updated_at"]),
        error=rec.get("error") if rec["state"] == "failed" else None,
    )


@dataclass(frozen=True)
class Stored:
    """Everything of a tenant in the watermark topic."""

    watermarks: dict[str, Watermark]
    backfills: dict[str, BackfillState]
    # Entities whose backfill state has a newer record the read did not wait for (an open
    # backfill transaction, perhaps abandoned): whoever fences the backfill transactional.id
    # reads them again (Backfiller.connect).
    unsettled_backfills: frozenset[str] = frozenset()
    # Entities whose live watermark has a newer record the read did not wait for (observe).
    unsettled_watermarks: frozenset[str] = frozenset()


def backfill_key(key: tuple[str, ...]) -> bool:
    """A backfill state's key, `[tenant, entity, "backfill"]`."""
    return len(key) == 3 and key[2] == BACKFILL


def load_all(
    kafka: KafkaConfig,
    topic: str,
    tenant: str,
    timeout_s: float = 60.0,
    missing_ok: bool = False,
    wait_for: Callable[[tuple[str, ...]], bool] = watermark.every_key,
    settle_s: float | None = None,
) -> Stored:
    """The live watermarks and the backfill states, from one read of the topic; it waits for
    the newest committed record of every key `wait_for` accepts (all, by default; see
    watermark.read_records)."""
    got = watermark.read_records(kafka, topic, tenant, timeout_s, missing_ok, wait_for, settle_s)
    records = got.records
    marks = {key[1]: watermark.decode(v) for key, v in records.items() if watermark.live_key(key)}
    backfills = {key[1]: decode(v) for key, v in records.items() if backfill_key(key)}
    return Stored(
        marks,
        backfills,
        frozenset(key[1] for key in got.unsettled if backfill_key(key)),
        frozenset(key[1] for key in got.unsettled if watermark.live_key(key)),
    )


def observe(kafka: KafkaConfig, topic: str, tenant: str, settle_s: float = 5.0) -> Stored:
    """What `status` and `watermarks show` report. Like the run, they wait for the newest
    committed live watermarks, but only `settle_s`: a poller killed mid-commit leaves its
    transaction open until a poller of the tenant starts again (or transaction.timeout.ms
    ends it), and that is when an operator looks. Then the committed state is shown, with the
    entities whose newer record lies in the open transaction named in `unsettled_watermarks`.
    A missing topic reads as nothing stored (an observer creates nothing)."""
    try:
        return load_all(
            kafka, topic, tenant, 15.0, True, wait_for=watermark.live_key, settle_s=settle_s
        )
    except OpenTransactionError:
        return load_all(kafka, topic, tenant, 15.0, True, wait_for=watermark.no_key)
