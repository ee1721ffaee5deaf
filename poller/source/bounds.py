"""The read bound of a batch: how far the horizon (or, without it, the settle delay) lets a
batch read, how far open transactions held it back, and what held it (see horizon.py)."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from poller.batch import Position
from poller.config import EntityConfig
from poller.source.horizon import (
    HorizonAccess,
    Id,
    IdHorizon,
    TimeHorizon,
    blind_reason,
    has_lists,
    oldest_who,
    open_transactions,
)
from poller.source.horizon_writers import scope_params
from poller.source.query import EntityQuery


@dataclass
class ReadBounds:
    """One entity's bounds; the reader asks it inside the batch's connection."""

    dialect: str
    query: EntityQuery
    entity: EntityConfig
    zone: ZoneInfo
    access: HorizonAccess | None
    own: set[str] = field(default_factory=set)  # MySQL: the poller's own sessions (left out)
    ids: IdHorizon = field(init=False)
    times: TimeHorizon = field(init=False)
    scope: dict[str, object] = field(init=False)

    def __post_init__(self) -> None:
        self.ids = IdHorizon(self.dialect)
        self.scope = scope_params(self.entity.table)  # MySQL: who may write the table
        self.times = TimeHorizon(self.dialect, self.own, self.scope)
        self.family = "time" if self.entity.is_time_mode else "id"

    @property
    def horizon_active(self) -> bool:
        """Whether open transactions bound the batches (probed at start, checked at use)."""
        return self.access is not None and self.access.active(self.family)

    def id_bounded(self) -> bool:
        """id mode reads below a bound with the horizon, and without it where the horizon was
        wanted but is missing (no privilege, a standby: the settle delay, as in timestamp
        modes) or a settle delay is configured; else (SQLite, `horizon: settle` without a
        delay) up to the newest id."""
        if self.horizon_active or self.entity.settle_delay_s is not None:
            return True
        access = self.access
        return access is not None and access.setting == "transactions" and has_lists(self.dialect)

    def id_bound(self, conn: sa.Connection, position: Position) -> tuple[Id | None, float, str]:
        """id mode: the largest id no open transaction can still commit below (see horizon)."""
        ids = self.ids
        at = position.cursor
        if ids.bound is not None and isinstance(at, int | Decimal) and at < ids.bound:
            now = time.monotonic()  # rows below it remain
            return ids.bound, ids.waiting_s(now), self._id_held(now)
        read_at = time.monotonic()
        max_id = conn.execute(self.query.max_cursor()).scalar()
        conn.commit()  # the list and the batch get fresh snapshots (MySQL: REPEATABLE READ)
        dialect = self.dialect
        if self.horizon_active and not ids.needs_list(max_id):
            now = time.monotonic()
            bound = ids.update(max_id, frozenset(), now, read_at)
            return bound, ids.waiting_s(now), self._id_held(now)
        if self.horizon_active:
            if ids.list_delay_s:
                time.sleep(ids.list_delay_s)
            opened = open_transactions(conn, dialect, self.scope)
            why = blind_reason(conn, dialect)  # asked after the list: it was complete then
            conn.commit()
            if why is None:
                now = time.monotonic()
                bound = ids.update(max_id, opened, now, read_at)
                return bound, ids.waiting_s(now), self._id_held(now)
            assert self.access is not None
            self.access.went_blind(why)
        now = time.monotonic()
        bound = ids.update_settled(max_id, now, self.entity.settle_s(False))
        return bound, ids.waiting_s(now), self._id_held(now)

    def _id_held(self, now: float) -> str:
        waiting = self.ids.waiting_s(now)
        if waiting <= 0:
            return ""
        held = sorted(self.ids.held_by())
        who = f"open transaction(s) {', '.join(held[:5])}" if held else "the settle delay"
        more = f" and {len(held) - 5} more" if len(held) > 5 else ""
        return f"newer ids wait for {who}{more} ({waiting:.1f} s)"

    def time_bound(self, conn: sa.Connection, now_utc: dt.datetime) -> tuple[object, float, str]:
        """The exclusive upper bound of a time-mode batch, in the column's own terms (a date,
        an instant, or wall-clock time in source.timezone), the horizon's hold-back and what
        held it back."""
        bound = now_utc - dt.timedelta(seconds=self.entity.settle_s(self.horizon_active))
        holdback, held = 0.0, ""
        if self.horizon_active:
            dialect = self.dialect
            oldest = self.times.oldest(conn, now_utc)
            why = blind_reason(conn, dialect)  # asked after the list: it was complete then
            if why is not None:
                assert self.access is not None
                self.access.went_blind(why)
                bound = now_utc - dt.timedelta(seconds=self.entity.settle_s(False))
            elif oldest is not None and oldest < bound:
                holdback = (bound - oldest).total_seconds()
                bound = oldest
                age = (now_utc - oldest).total_seconds()
                who = oldest_who(conn, dialect)
                held = (
                    f"a transaction open since {oldest:%Y-%m-%d %H:%M:%S.%f} UTC ({age:.1f} s"
                    + (f"; {who})" if who else ")")
                )
        ctype = self.query.cursor_type
        if ctype.kind == "date":  # a day is complete once all of it is behind the bound
            return bound.astimezone(self.zone).date(), holdback, held
        if ctype.aware:
            return bound, holdback, held
        return bound.astimezone(self.zone).replace(tzinfo=None), holdback, held
