"""A periodic INFO line per entity while `poller run` copies, rate-limited like Debezium's
"N records sent during previous 1m": rows and rate since the last line, the watermark, the
lag and the horizon's holdback. Entities that neither published nor were held back stay quiet.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import Gauge

    from poller.pipeline.runner import Poller

log = logging.getLogger("poller.progress")


def _gauge(gauge: Gauge, *labels: str) -> float | None:
    """A labelled gauge's current value (None before it was ever set)."""
    for family in gauge.collect():
        for sample in family.samples:
            if tuple(sample.labels.values()) == labels:
                return float(sample.value)
    return None


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    return f"{s // 3600}h{s % 3600 // 60}m"


class RunLog:
    """The run loop's observer (`Poller.observer`) for runs without a progress bar."""

    def __init__(self, interval_s: float = 60.0, clock: Any = time.monotonic) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.poller: Poller | None = None
        self.rows: dict[str, int] = {}
        self.since = clock()

    def started(self, poller: Poller) -> None:
        self.poller = poller
        for name in poller.streams:
            self.rows.setdefault(name, 0)

    def committed(self, entity: str, rows: int) -> None:
        self.rows[entity] = self.rows.get(entity, 0) + rows
        self.maybe_log()

    def caught_up(self, entity: str) -> None:
        self.maybe_log()

    def maybe_log(self) -> None:
        now = self.clock()
        elapsed = now - self.since
        if self.interval_s <= 0 or elapsed < self.interval_s or self.poller is None:
            return
        for line, entity in self.lines(elapsed):
            log.info("%s", line, extra={"entity": entity})
        self.rows = dict.fromkeys(self.rows, 0)
        self.since = now

    def lines(self, elapsed: float) -> list[tuple[str, str]]:
        assert self.poller is not None
        m, tenant = self.poller.metrics, self.poller.tenant
        out = []
        for name, stream in self.poller.streams.items():
            rows = self.rows.get(name, 0)
            holdback = _gauge(m.horizon_holdback, tenant, name)
            if rows == 0 and not holdback:
                continue
            lag = _gauge(m.lag_seconds, tenant, name)
            pos = stream.position
            mark = "earliest" if pos.cursor is None else f"{pos.cursor}"
            if pos.key is not None and pos.key != pos.cursor:
                mark += f" / {pos.key}"
            parts = [
                f"{rows:,} rows during the previous {_duration(elapsed)} "
                f"({rows / elapsed:,.1f} rows/s), {stream.rows_total:,} in total",
                f"watermark {mark}",
            ]
            if lag is not None and stream.cfg.is_time_mode:
                parts.append(f"lag {_duration(max(lag, 0.0))}")
            if holdback:
                parts.append(f"held back {_duration(holdback)} by open source transactions")
            out.append(("; ".join(parts), name))
        return out
