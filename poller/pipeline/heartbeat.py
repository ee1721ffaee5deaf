"""Heartbeats: every `heartbeat_interval_s` an idle (caught-up) entity writes its watermark
record again, unchanged but for `heartbeat_at`: the database time up to which every committed
row was read (less the settle delay), i.e. the read bound of its last caught-up batch, not the
database's now: while an open transaction holds the horizon back, "caught up at T" stays at
that transaction's start. Consumers and dashboards can then tell "caught up at T" from
"stalled": a stalled poller writes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import zoneinfo
from collections.abc import Iterable

from poller.kafka.publisher import TransactionalPublisher
from poller.kafka.watermark import encode, key_bytes
from poller.ops.entity_metrics import TenantMetrics
from poller.pipeline.stream import EntityStream
from poller.source.reader import SourceReader


class Heartbeats:
    def __init__(self, tenant: str, meters: TenantMetrics, watermark_topic: str, zone: str) -> None:
        self.tenant = tenant
        self.meters = meters
        self.topic = watermark_topic
        self.zone = zoneinfo.ZoneInfo(zone)
        self._last: dict[str, float] = {}  # monotonic time of the last heartbeat
        self._safe: dict[str, float] = {}  # monotonic: the last caught-up batch's Batch.safe_at

    def read_to(self, name: str, safe_at: float | None) -> None:
        """An entity caught up: every row committed before `safe_at` (monotonic) is read."""
        if safe_at is not None:
            self._safe[name] = safe_at

    def start(self, names: Iterable[str]) -> None:
        """The first heartbeat of an entity is due one interval after the poller starts, so
        a short `run --once` writes none."""
        now = time.monotonic()
        for name in names:
            self._last.setdefault(name, now)

    def due_at(self, s: EntityStream) -> float | None:
        interval = s.cfg.heartbeat_interval_s
        if interval <= 0 or not s.caught_up:
            return None
        return self._last.get(s.name, time.monotonic()) + interval

    def next_due(self, streams: Iterable[EntityStream]) -> float | None:
        dues = [d for s in streams if (d := self.due_at(s)) is not None]
        return min(dues, default=None)

    def beat_if_due(
        self, s: EntityStream, reader: SourceReader, publisher: TransactionalPublisher
    ) -> bool:
        """One transaction with the entity's watermark record and the database's now."""
        due = self.due_at(s)
        if due is None or due > time.monotonic():
            return False
        local = reader.db_now()  # naive, in source.timezone
        assert isinstance(local, dt.datetime)
        db_now = local.replace(tzinfo=self.zone).astimezone(dt.UTC)
        safe = self._safe.get(s.name)
        if safe is not None:  # the read bound, on the database's clock
            db_now -= dt.timedelta(seconds=max(0.0, time.monotonic() - safe))
        wm = dataclasses.replace(s.watermark(s.position, s.rows_total), heartbeat_at=db_now)
        publisher.begin()
        try:
            publisher.send(self.topic, key_bytes(self.tenant, s.name), encode(wm))
        except BaseException:
            publisher.abort()
            raise
        publisher.commit()
        self._last[s.name] = time.monotonic()
        self.meters.entity(s.name).heartbeat_written(db_now.timestamp())
        return True
