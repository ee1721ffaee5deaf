"""Soft deletes: which value of an entity's `deletes.column` marks a row as deleted.

With `values`, a row is deleted when its column equals one of them; numbers and text compare
by meaning, not by driver type (a CHAR(1) 'Y', an integer 1 and a boolean true all match the
configured `1`, `'Y'` or `true` as a person would read them). Without `values`, a row is deleted
when the column is not NULL (a `deleted_at` timestamp).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

from poller.config import DeletesConfig

_INTEGER = re.compile(r"^[+-]?\d+$")


def _normal(v: object) -> object:
    """One comparable form per meaning: booleans and integral numbers as int, text stripped."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, Decimal | float):
        try:
            whole = int(v)
        except (ValueError, OverflowError):  # NaN, infinity
            return v
        return whole if whole == v else v
    if isinstance(v, bytes | bytearray | memoryview):  # MySQL BIT(1)
        return int.from_bytes(bytes(v), "big")
    if isinstance(v, str):
        s = v.strip()
        if _INTEGER.match(s):
            return int(s)
        low = s.lower()
        return {"true": 1, "false": 0}.get(low, s)
    return v


def deleted_matcher(deletes: DeletesConfig) -> Callable[[object], bool]:
    """is_deleted(value of the deletes column) for one entity."""
    if deletes.values is None:
        return lambda v: v is not None
    wanted = frozenset(_normal(v) for v in deletes.values)

    def is_deleted(v: object) -> bool:
        if v is None:
            return False
        try:
            return _normal(v) in wanted
        except TypeError:  # an unhashable driver value
            return False

    return is_deleted
