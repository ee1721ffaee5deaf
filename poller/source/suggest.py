"""`poller check`'s hint for a mistyped column: the closest existing one."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from poller.source.query import EntityQuery


def did_you_mean(name: str, existing: Sequence[str]) -> str:
    """ "; did you mean 'email'?" for the closest existing column, or ""."""
    by_lower = {c.lower(): c for c in existing}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f"; did you mean {by_lower[close[0]]!r}?" if close else ""


def query_columns(conn: sa.Connection, query: EntityQuery) -> list[str]:
    """The column names of a `query:` entity (a zero-row SELECT *)."""
    try:
        result = conn.execute(query.probe(sa.literal_column("*")))
        names = list(result.keys())
        result.close()
    except sa_exc.DBAPIError:
        conn.rollback()
        return []
    return names
