"""When `run --once` is done: every entity has read everything committed before the run started.

An empty batch is not enough: while a source transaction is open the horizon holds the read bound
back, batches come back short or empty, and "caught up" would only mean "caught up with what
the open transactions allow". So each batch says up to when every committed row was read
(`Batch.safe_at`, monotonic; in timestamp modes less the settle delay, the goal being the start
less the settle delay, as everywhere else). `--once` waits, up to `max_wait_s` after every
entity is caught up, for that to pass the run's start, and otherwise stops with
HorizonNotReachedError (exit 9) naming what held each entity back. Rows committed before the
open transactions are published either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from poller.batch import Batch
from poller.errors import HorizonNotReachedError

log = logging.getLogger(__name__)

DEFAULT_MAX_WAIT_S = 60.0


@dataclass
class _Bound:
    safe_at: float | None
    held_by: str
    holdback_s: float


class OnceGoal:
    def __init__(self, tenant: str, max_wait_s: float, started: float | None = None) -> None:
        self.tenant = tenant
        self.max_wait_s = max_wait_s
        self.started = time.monotonic() if started is None else started
        self._bounds: dict[str, _Bound] = {}
        self._waiting_since: float | None = None

    def saw(self, entity: str, batch: Batch) -> None:
        """The last batch read of an entity (the caught-up one counts)."""
        self._bounds[entity] = _Bound(batch.safe_at, batch.held_by, batch.holdback_s)

    def behind(self, entities: Iterable[str]) -> dict[str, str]:
        """Entities whose read bound has not passed the run's start, with what holds them."""
        out: dict[str, str] = {}
        for name in entities:
            b = self._bounds.get(name)
            if b is None or b.safe_at is None or b.safe_at < self.started:
                held = b.held_by if b is not None and b.held_by else "no safe bound yet"
                out[name] = held
        return out

    def done(self, entities: Iterable[str], now: float | None = None) -> bool:
        """Called when every entity is caught up: True once all passed the start; raises
        HorizonNotReachedError when they have not after max_wait_s."""
        names = list(entities)
        behind = self.behind(names)
        now = time.monotonic() if now is None else now
        if not behind:
            if self._waiting_since is not None:
                log.info(
                    "%s: --once reached its start after waiting %.1f s for open transactions",
                    self.tenant,
                    now - self._waiting_since,
                    extra={"tenant": self.tenant},
                )
            return True
        what = "; ".join(f"{n}: {why}" for n, why in sorted(behind.items()))
        if self._waiting_since is None:
            self._waiting_since = now
            log.warning(
                "%s: --once is caught up with every committed row the open source transactions "
                "allow; waiting up to %.0f s for them (%s)",
                self.tenant,
                self.max_wait_s,
                what,
                extra={"tenant": self.tenant},
            )
        waited = now - self._waiting_since
        if waited >= self.max_wait_s:
            raise HorizonNotReachedError(
                f"tenant {self.tenant!r}: --once could not read up to its start time: after "
                f"waiting {waited:.1f} s, open source transactions still hold back {what}. "
                "Every row committed before them was published; run again later, raise "
                "--max-wait, or find the long transaction (docs/horizon.md)."
            )
        return False
