"""The schedule generator alone (no services): the same seed gives the same schedule, and every
schedule is one the driver can run (no step of a session that waits, locks taken only when no
other open transaction has touched the table, everything ended before the drain)."""

from __future__ import annotations

import json

import pytest

from tests.model.schedule import generate, render

MODES = ["id", "timestamp", "timestamp+id"]


@pytest.mark.parametrize("db", ["postgresql", "mariadb"])
@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_schedule(db: str, mode: str) -> None:
    for seed in range(50):
        steps = generate(db, mode, seed)
        assert steps == generate(db, mode, seed)
        assert json.loads(render(db, mode, seed, steps))["steps"] == steps


@pytest.mark.parametrize("db", ["postgresql", "mariadb"])
def test_schedules_are_runnable(db: str) -> None:
    for seed in range(300):
        steps = generate(db, "timestamp", seed)
        assert steps[-1] == {"op": "drain"}
        in_txn: set[int] = set()
        waiting: set[int] = set()
        holder: int | None = None
        pass_waiting = False
        for step in steps[:-1]:
            op, w = step["op"], step.get("w")
            assert w is None or w not in waiting, f"seed {seed}: {step} while w{w} waits"
            if step.get("blocks"):
                assert holder is not None and holder != w, f"seed {seed}: {step} blocks on what?"
                if op == "pass":
                    pass_waiting = True
                else:
                    waiting.add(w)
            if op in ("begin", "begin_ro"):
                assert w not in in_txn
                in_txn.add(w)
            elif op in ("commit", "rollback"):
                in_txn.discard(w)
            elif op == "lock":
                assert holder is None and not pass_waiting
                holder = w
            elif op == "unlock":
                assert holder == w
                holder, pass_waiting = None, False
                waiting.clear()
            elif op in ("kill", "restart"):
                assert holder is None and not pass_waiting
        assert holder is None and not waiting and not in_txn, f"seed {seed}: left open"
