"""Where an entity's stream stands and what one read of it yields: `Position` (a place in the
keyset order, what a watermark stores), `Batch` (the rows read after a position) and `Encoded`
(a batch's messages, when the native path encoded them). Plain data shared by source, kafka,
pipeline, verify and cli; it imports nothing of the poller (the ground floor, beside errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Position:
    """Where an entity's stream stands: the next batch holds rows strictly after (cursor, key).

    `cursor` None means from the beginning; `key` None with a cursor means "after this cursor
    value" (a `start:` value, where no row has been read yet).
    """

    cursor: object | None = None
    key: object | None = None  # a tuple when the tie-breaker is a composite key


BEGINNING = Position()


@dataclass
class Encoded:
    """A batch's messages, ready to produce."""

    values: list[bytes]
    keys: list[bytes]
    stamps: list[int] | None  # message times (ms), time modes only


@dataclass
class Batch:
    rows: list[Sequence[object]]  # fields in field_names order, then cursor, then tie-breaker
    last: Position | None  # position of the last row; None when empty
    db_now: object | None  # the database's now (naive, source.timezone) of the upper bound
    holdback_s: float = 0.0  # how far open transactions held the upper bound back
    # Monotonic time up to which every committed row is at or below the read bound (less the
    # settle delay in timestamp modes): what "caught up" means. None: not known yet.
    safe_at: float | None = None
    held_by: str = ""  # what held the bound back (an open transaction's start, its age)
    # The native path's messages; `rows` then holds one empty placeholder per row.
    encoded: Encoded | None = None
