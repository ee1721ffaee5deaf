"""Fresh reads of MySQL/MariaDB's INFORMATION_SCHEMA.INNODB_TRX.

InnoDB serves INNODB_TRX from a buffer that it refills only when more than 0.1 s has passed
since anyone last *read* it (MySQL reference manual, "Persistence and Consistency of InnoDB
Transaction and Locking Information"). Clients that read it more often than that (the other
pollers of a fleet, a monitoring agent) keep it stale for as long as they go on, and a stale
list misses a writer that opened since: its rows would be passed over. So a list counts only
when it shows the reader's own transaction, begun WITH CONSISTENT SNAPSHOT (which registers it
in InnoDB at once) after everything the list must cover. The list statements mark that row
with OWN; `fresh_rows` strips it, and raises StaleList when it never shows up.

Readers take turns under a server-wide named lock (GET_LOCK), and each waits for its turn in
a statement that carries its marker: one reader's fill then proves fresh for every reader
queued behind it, and the one that finds the buffer stale knows no other poller reads it
while it waits the 0.1 s out. Without the turns every read restarts everyone's 0.1 s (four
pollers on one server: lists stale for seconds, drains crawling).
"""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

OWN = "own"  # the reader's own row in a list statement's first column (others: ids, digits)
# The reader's own row shows the statement being read only when the buffer was filled while it
# ran: its text carries the call's marker (a random token, bound; the drivers here send binds
# inside the statement's text). A stale buffer shows an earlier statement of the same session,
# or an earlier marker transaction of it: one second's trx_started cannot tell them apart.
FRESH = "t.trx_query LIKE CONCAT('%', :marker, '%')"
# Every read, fresh or not, restarts the 0.1 s. Holding the turn, a reader that finds the
# buffer stale waits just over 0.1 s once; past that, someone outside the turns (a monitoring
# agent, a poller without the lock) is reading too: random 0.15-0.6 s back-offs, so that fixed
# beats do not keep the buffer stale for one another. The call gives up after about 4 s.
_REFILL_S = 0.11
_PAUSE_S = (0.15, 0.6)
_GIVE_UP_S = 4.0
TURN = "poller.innodb_trx"  # the named lock: per server, as the buffer is
# Read-only: another poller's lists leave it out (trx_is_read_only), so pollers waiting for
# their turns do not hold one another's horizons back.
_BEGIN = "START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT"
# The marker rides in the statement's text (a bound literal, as FRESH's): a fill made while
# this reader waits for its turn shows it in the reader's trx_query.
_TAKE_TURN = sa.text("SELECT GET_LOCK(:turn, :wait_s), :marker")
_END_TURN = sa.text("SELECT RELEASE_LOCK(:turn)")

STALE = (
    "the transaction list (INFORMATION_SCHEMA.INNODB_TRX) stayed stale: InnoDB refreshes it "
    "only after 0.1 s without any reader, and other clients read it more often than that"
)


class StaleList(Exception):
    """INNODB_TRX could not be shown fresh: nothing may pass the horizon this turn."""


def fresh_rows(
    conn: sa.Connection, stmt: sa.TextClause, params: Mapping[str, object]
) -> list[Sequence[Any]]:
    """The statement's rows from a buffer filled after this call began, without the OWN row
    (whose second column is non-NULL once the buffer shows the reader's transaction).

    The marker transaction is committed before returning: a batch read after the list must
    take its snapshot after the list, not before (a writer that commits in between would be
    neither listed nor visible)."""
    conn.exec_driver_sql(_BEGIN)
    marker = f"poller-marker-{secrets.token_hex(12)}"
    params = {**params, "marker": marker}
    give_up = time.monotonic() + _GIVE_UP_S
    turn = _take_turn(conn, marker)
    try:
        pause = _REFILL_S if turn else random.uniform(*_PAUSE_S)
        while True:
            rows = [tuple(r) for r in conn.execute(stmt, dict(params))]
            own = [r for r in rows if r[0] == OWN]
            if own and own[0][1] is not None:
                return [r for r in rows if r[0] != OWN]
            if time.monotonic() + pause >= give_up:
                raise StaleList(STALE)
            time.sleep(pause)
            pause = random.uniform(*_PAUSE_S)
    finally:
        if turn:
            conn.execute(_END_TURN, {"turn": TURN})
        conn.commit()


def _take_turn(conn: sa.Connection, marker: str) -> bool:
    """Whether this reader holds the turn. Not having it (timed out, or a server without
    named locks such as a Galera cluster) only costs speed: freshness is proven all the same."""
    try:
        got = conn.execute(
            _TAKE_TURN, {"turn": TURN, "wait_s": int(_GIVE_UP_S), "marker": marker}
        ).scalar()
    except sa.exc.DBAPIError:
        return False
    return got == 1
