"""Seeded schedules of writer steps and poller turns, generated against a model of the sessions
(who is in a transaction, who holds the table lock, who queues behind it, which rows each open
transaction has written), so every step is known in advance to run through or to block.

A schedule is plain data (a list of dicts): it is printed and stored as a replay as it is, and
`generate(db, mode, seed)` always returns the same one.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

Step = dict[str, Any]

MINE, OTHER = "mine", "other"  # the poller's tenant and the one sharing its table


# Where a transaction that reserved an id (nextval) before writing is visible to the horizon.
# MariaDB shows such a transaction nowhere (not in innodb_trx, not in PROCESSLIST, and
# performance_schema is off by default), so ids reserved ahead there are a known gap of the
# product, documented in docs/horizon-dialects.md with its replay in tests/model/known_gaps/;
# MariaDB's writers take ids at the write (AUTO_INCREMENT) instead.
RESERVED_IDS_SEEN = frozenset({"postgresql"})


@dataclass
class Knobs:
    """Sizes of a schedule."""

    writers: int = 3
    steps: int = 28
    sleep_budget_ms: int = 400  # total time the writers may stand still (long transactions)
    lock_sleep_budget_ms: int = 650  # and the lock holders (long lock waits)
    kill_chance: float = 0.05  # per schedule: one SIGKILLed `poller run` in the middle
    restart_chance: float = 0.15  # per schedule: one in-process poller replaced by a new one


@dataclass
class _Writer:
    txn: str | None = None  # None (idle), "rw", "ro", "lock"
    touched: bool = False  # the open transaction has read or written `items`
    blocked: bool = False  # its last statement waits behind the lock
    ids: list[str] = field(default_factory=list)  # ids taken (nextval) and not used yet
    written: set[str] = field(default_factory=set)  # rows its open transaction wrote
    inserted: set[str] = field(default_factory=set)  # of those, the ones it inserted


@dataclass
class _Row:
    tenant: str
    committed: bool = False
    alive: bool = True  # False once its insert was rolled back
    locked_by: int | None = None


class _Gen:
    def __init__(self, db: str, mode: str, seed: int, knobs: Knobs) -> None:
        self.db, self.mode, self.seed, self.k = db, mode, seed, knobs
        self.rng = random.Random(f"{db}:{mode}:{seed}")
        # Two writers let the horizon settle more often (fewer transactions open at a time).
        self.w = [_Writer() for _ in range(self.rng.choice([2, knobs.writers]))]
        self.rows: dict[str, _Row] = {}
        self.lock: tuple[int, str] | None = None  # (holder, kind)
        self.pass_pending = False
        self.sleep_left = knobs.sleep_budget_ms
        self.lock_sleep_left = knobs.lock_sleep_budget_ms
        self.steps: list[Step] = []
        self.n_rows = self.n_ids = 0
        self.kill_at = self._maybe(knobs.kill_chance)
        self.restart_at = self._maybe(knobs.restart_chance)

    def _maybe(self, chance: float) -> int | None:
        return self.rng.randrange(4, max(5, self.k.steps)) if self.rng.random() < chance else None

    # -- helpers ---------------------------------------------------------------------------

    def _blocked_write(self, w: int) -> bool:
        return self.lock is not None and self.lock[0] != w

    def _stamp(self, in_txn: bool) -> str:
        kinds = ["now", "clock", "trigger"] + (["app", "app"] if in_txn else [])
        return self.rng.choice(kinds)

    def _new_row(self, tenant: str) -> str:
        self.n_rows += 1
        h = f"r{self.n_rows}"
        self.rows[h] = _Row(tenant)
        return h

    def emit(self, step: Step) -> None:
        self.steps.append(step)

    # -- actions -----------------------------------------------------------------------------

    def candidates(self) -> list[tuple[float, Any]]:
        c: list[tuple[float, Any]] = []
        lock_kind = self.lock[1] if self.lock else None
        # While the lock is held, writers mostly write (and queue) rather than commit: a queue
        # behind a table lock is what this test is after.
        q = 1.6 if self.lock else 1.0
        for i, w in enumerate(self.w):
            if w.blocked:
                continue
            if w.txn is None:
                c.append((3.0, lambda i=i: self.begin(i)))
                if lock_kind != "all":
                    c.append((0.8, lambda i=i: self.begin_ro(i)))
                c.append((1.0 * q, lambda i=i: self.insert(i, autocommit=True)))
                if self.lock is None and not self.pass_pending and self._lockable(i):
                    c.append((1.0, lambda i=i: self.take_lock(i)))
            elif w.txn == "rw":
                # JPA/Hibernate: ids are taken at persist(), before the first write (flush)
                # and written at flush time, often much later: the ids wait in the meantime.
                few = not w.touched and len(w.ids) < 2
                if self.db in RESERVED_IDS_SEEN:
                    c.append((3.0 if few else 0.7, lambda i=i: self.take_id(i)))
                c.append((1.2 if w.ids else 3.0 * q, lambda i=i: self.insert(i, autocommit=False)))
                if self._updatable(i):
                    c.append((2.0 * q, lambda i=i: self.update(i)))
                c.append((0.5 if w.ids else 2.2 / q, lambda i=i: self.end(i, "commit")))
                c.append((0.6 / q, lambda i=i: self.end(i, "rollback")))
            elif w.txn == "ro":
                c.append((1.5, lambda i=i: self.end(i, "commit")))
            elif w.txn == "lock":
                if lock_kind == "all":
                    c.append((2.5, lambda i=i: self.insert(i, autocommit=self.db == "mariadb")))
                waiting = sum(x.blocked for x in self.w)
                c.append((0.4 + 0.6 * waiting, lambda i=i: self.unlock(i)))
        if not self.pass_pending:  # a pass behind an "all" lock waits for the rest of it
            c.append((1.0 if lock_kind == "all" else 3.0, self.poller_pass))
        if self.lock and self.lock_sleep_left >= 250:  # writers queue behind a lock held long
            c.append((2.5, self.sleep))
        elif not self.lock and self.sleep_left >= 10:
            c.append((1.0, self.sleep))
        return c

    def _lockable(self, holder: int) -> bool:
        """A lock is taken only when no other open transaction has touched the table (else the
        LOCK itself would queue behind it)."""
        return not any(w.txn is not None and w.touched for j, w in enumerate(self.w) if j != holder)

    def _updatable(self, i: int) -> list[str]:
        return sorted(
            (h for h, r in self.rows.items() if r.alive and (r.locked_by == i or (
                r.locked_by is None and r.committed))),
            key=lambda h: int(h[1:]),
        )  # fmt: skip

    def begin(self, i: int) -> None:
        self.w[i].txn = "rw"
        self.emit({"op": "begin", "w": i})

    def begin_ro(self, i: int) -> None:
        self.w[i].txn, self.w[i].touched = "ro", True
        self.emit({"op": "begin_ro", "w": i})

    def take_id(self, i: int) -> None:
        self.n_ids += 1
        h = f"i{self.n_ids}"
        self.w[i].ids.append(h)
        self.emit({"op": "take_id", "w": i, "id": h})

    def insert(self, i: int, autocommit: bool) -> None:
        w = self.w[i]
        n = self.rng.choice([1, 1, 1, 2, 3])
        tenant = MINE if self.rng.random() < 0.7 else OTHER
        ids: list[str | None] = []
        for _ in range(n):
            use = w.ids and self.rng.random() < 0.8
            ids.append(w.ids.pop(self.rng.randrange(len(w.ids))) if use else None)
        if any(ids) and not all(ids):  # one statement: all explicit ids or all defaults
            ids = [x for x in ids if x] or [None]
            n = len(ids)
        rows = [self._new_row(tenant) for _ in range(n)]
        blocks = self._blocked_write(i)
        # The application stamps inside a transaction it began: never before that transaction
        # is listed (before it would be a documented limit, protected by the settle delay only).
        step = {
            "op": "insert", "w": i, "tenant": tenant, "rows": rows, "ids": ids,
            "stamp": self._stamp(not autocommit and not blocks), "autocommit": autocommit,
            "blocks": blocks,
        }  # fmt: skip
        self.emit(step)
        for h in rows:
            if autocommit and not blocks:
                self.rows[h].committed = True
            else:
                self.rows[h].locked_by = i
        if autocommit and blocks:  # committed when the lock goes
            w.written.update(rows)
            w.inserted.update(rows)
            w.txn = "auto"
        elif not autocommit:
            w.written.update(rows)
            w.inserted.update(rows)
            w.touched = True
        w.blocked = blocks

    def update(self, i: int) -> None:
        w = self.w[i]
        h = self.rng.choice(self._updatable(i))
        blocks = self._blocked_write(i)
        self.emit(
            {"op": "update", "w": i, "row": h, "stamp": self._stamp(not blocks), "blocks": blocks}
        )
        self.rows[h].locked_by = i
        w.written.add(h)
        w.touched, w.blocked = True, blocks

    def end(self, i: int, how: str) -> None:
        self.emit({"op": how, "w": i})
        self._finish(i, how)

    def _finish(self, i: int, how: str) -> None:
        w = self.w[i]
        if w.txn in ("rw", "auto", "lock"):
            for h in w.written:
                r = self.rows[h]
                r.locked_by = None
                if how == "commit":
                    r.committed = True
                elif h in w.inserted:
                    r.alive = False
        self.w[i] = _Writer()

    def take_lock(self, i: int) -> None:
        kind = self.rng.choice(["writes", "all"])
        self.lock = (i, kind)
        w = self.w[i]
        w.txn, w.touched = "lock", True
        self.emit({"op": "lock", "w": i, "kind": kind})

    def unlock(self, i: int) -> None:
        self.emit({"op": "unlock", "w": i})
        self._finish(i, "commit")  # PostgreSQL: COMMIT; MariaDB: its rows were autocommitted
        self.lock = None
        for j, w in enumerate(self.w):
            if w.blocked:
                w.blocked = False
                if w.txn == "auto":  # its autocommit insert went through
                    self._finish(j, "commit")
        self.pass_pending = False

    def poller_pass(self) -> None:
        blocks = self.lock is not None and self.lock[1] == "all"
        self.emit({"op": "pass", "blocks": blocks})
        self.pass_pending = blocks

    def sleep(self) -> None:
        if self.lock:
            ms = min(self.lock_sleep_left, self.rng.choice([250, 400]))
            self.lock_sleep_left -= ms
        else:
            ms = min(self.sleep_left, self.rng.choice([10, 30, 60, 120, 250, 400]))
            self.sleep_left -= ms
        self.emit({"op": "sleep", "ms": ms})
        # The poller polls on its own clock: time passing is when a pass tends to come.
        if ms >= 100 and not self.pass_pending and self.rng.random() < 0.6:
            self.poller_pass()

    # -- the whole schedule ----------------------------------------------------------------------

    def run(self) -> list[Step]:
        for n in range(self.k.steps):
            calm = self.lock is None and not self.pass_pending
            if n == self.kill_at and calm:
                self.emit({"op": "kill", "after_batches": self.rng.randrange(0, 4)})
                continue
            if n == self.restart_at and calm:
                self.emit({"op": "restart"})
                continue
            options = self.candidates()
            total = sum(wt for wt, _ in options)
            pick = self.rng.uniform(0, total)
            for wt, act in options:
                pick -= wt
                if pick <= 0:
                    act()
                    break
            else:
                options[-1][1]()
        # Close out: the lock goes, every writer ends, then the final drain.
        if self.lock is not None:
            self.unlock(self.lock[0])
        for i, w in enumerate(self.w):
            if w.txn is not None:
                self.end(i, "commit" if self.rng.random() < 0.75 else "rollback")
        self.emit({"op": "drain"})
        return self.steps


def generate(db: str, mode: str, seed: int, knobs: Knobs | None = None) -> list[Step]:
    return _Gen(db, mode, seed, knobs or Knobs()).run()


def render(db: str, mode: str, seed: int, steps: list[Step]) -> str:
    """A replay file's content (JSON): what tests/model/test_replays.py runs."""
    body = ",\n".join("    " + json.dumps(s, sort_keys=True) for s in steps)
    head = json.dumps({"db": db, "mode": mode, "seed": seed})[1:-1]
    return "{" + head + ', "steps": [\n' + body + "\n]}\n"
