"""The dialect-neutral horizon logic: id snapshots (int and Decimal ids, the settle fallback,
what holds them), the warnings per cursor family in use, and `run --once`'s goal."""

from __future__ import annotations

from decimal import Decimal

import pytest

from poller.batch import Batch
from poller.errors import HorizonNotReachedError
from poller.pipeline.once import OnceGoal
from poller.source.horizon import HorizonAccess, IdHorizon, as_id


def test_decimal_ids_settle_like_ints() -> None:
    ids = IdHorizon("postgresql")
    assert ids.update(Decimal("5"), ["a"], now=1.0) is None  # a was open when 5 was the max
    assert ids.held_by() == frozenset({"a"})
    assert ids.update(Decimal("7"), ["a"], now=2.0) is None
    assert ids.update(Decimal("7"), [], now=3.0) == Decimal("7")
    assert ids.safe_at == 2.0  # the read time of the snapshot that set the bound
    assert ids.update(Decimal("7"), [], now=4.0) == Decimal("7")
    assert ids.safe_at == 4.0  # nothing newer: safe up to this read


def test_as_id_refuses_what_cannot_be_ordered_as_an_id() -> None:
    assert as_id(None) is None and as_id(True) is None
    assert as_id(Decimal("18")) == 18 and as_id(3) == 3
    with pytest.raises(TypeError, match="id mode needs integers"):
        as_id("12")
    with pytest.raises(TypeError):
        as_id(Decimal("NaN"))


def test_without_lists_an_id_is_safe_once_it_was_the_max_for_the_settle_delay() -> None:
    ids = IdHorizon("postgresql")
    assert ids.update_settled(10, now=0.0, settle_s=30) is None
    assert ids.update_settled(12, now=20.0, settle_s=30) is None
    assert ids.update_settled(12, now=30.0, settle_s=30) == 10
    assert ids.update_settled(12, now=50.0, settle_s=30) == 12
    assert ids.waiting_s(50.0) == 0


def test_warnings_name_only_the_families_in_use() -> None:
    access = HorizonAccess("transactions", "postgresql")
    access.missing = {"time": "no role", "id": "no role"}
    access.probed = True
    assert [w.split(":")[1] for w in access.warnings({"id"})] == [
        " transactions unavailable for id mode"
    ]
    assert access.warnings(set()) == []
    assert len(access.warnings()) == 2


def test_a_lost_list_turns_the_horizon_off_until_it_is_complete_again() -> None:
    access = HorizonAccess("transactions", "postgresql", probed=True)
    assert access.active("time")
    access.went_blind("role revoked")
    assert not access.active("time") and not access.active("id")


def batch(safe_at: float | None, held: str = "") -> Batch:
    return Batch([], None, None, 3.0 if held else 0.0, safe_at, held)


def test_once_is_done_when_every_bound_passed_the_start() -> None:
    goal = OnceGoal("acme", max_wait_s=10, started=100.0)
    goal.saw("a", batch(101.0))
    goal.saw("b", batch(99.0, "a transaction open since X (5.0 s)"))
    assert not goal.done(["a", "b"], now=105.0)
    assert goal.behind(["a", "b"]) == {"b": "a transaction open since X (5.0 s)"}
    goal.saw("b", batch(106.0))
    assert goal.done(["a", "b"], now=106.0)


def test_once_gives_up_after_max_wait_naming_what_held_it() -> None:
    goal = OnceGoal("acme", max_wait_s=10, started=100.0)
    goal.saw("orders", batch(50.0, "a transaction open since 2026-12-04 (60.0 s)"))
    assert not goal.done(["orders"], now=101.0)
    with pytest.raises(HorizonNotReachedError, match="orders: a transaction open since") as exc:
        goal.done(["orders"], now=111.0)
    assert exc.value.exit_code == 9
    never = OnceGoal("acme", max_wait_s=0, started=0.0)
    with pytest.raises(HorizonNotReachedError, match="no safe bound yet"):
        never.done(["customers"], now=1.0)
