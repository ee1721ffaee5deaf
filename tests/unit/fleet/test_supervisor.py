"""The supervisor's decisions, with stand-in child processes: at most max_tenants run, a
crashed one restarts with growing backoff, a new configuration restarts it, a removed one
stops and is forgotten, released partitions stop before the call returns, and nothing starts
while ownership is in doubt."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from poller.fleet import supervisor as sup_mod
from poller.fleet.metrics import WorkerMetrics
from poller.fleet.settings import WorkerConfig
from poller.fleet.supervisor import Supervisor


class FakeChild:
    started: list[FakeChild] = []

    def __init__(self, tenant: str, config_path: Path, port: int, limits_dir: Path) -> None:
        self.tenant, self.config_path, self.port = tenant, config_path, port
        self.text = config_path.read_text()
        self.started = time.monotonic()
        self.connected_at: float | None = None
        self.stopping_since: float | None = None
        self.code: int | None = None
        self.said: str | None = None  # the error the process printed when it stopped
        self.pid = 1000 + len(FakeChild.started)
        FakeChild.started.append(self)

    def poll(self) -> int | None:
        return self.code

    def reason(self) -> str | None:
        return self.said

    def terminate(self) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        self.code = 0 if self.code is None else self.code

    def kill_if_overdue(self, deadline_s: float) -> None:
        pass


def fake_stop_all(children: list[Any], deadline_s: float) -> None:
    for c in children:
        c.terminate()


@pytest.fixture
def sup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Supervisor:
    FakeChild.started = []
    monkeypatch.setattr(sup_mod, "Child", FakeChild)
    monkeypatch.setattr(sup_mod, "stop_all", fake_stop_all)
    monkeypatch.setattr(sup_mod, "free_port", lambda: 40000 + len(FakeChild.started))
    cfg = WorkerConfig.model_validate(
        {"max_tenants": 2, "restart": {"initial_backoff_s": 0.2, "max_backoff_s": 0.4}}
    )
    return Supervisor(cfg, WorkerMetrics("w"), tmp_path)


def raw(tenant: str, batch: int = 10) -> dict[str, Any]:
    return {"tenant": tenant, "entities": {"customers": {"batch_size": batch}}}


def running(s: Supervisor) -> set[str]:
    return {t.name for t in s.tenants.values() if t.child is not None}


def test_max_tenants_backoff_config_change_and_removal(sup: Supervisor) -> None:
    for i, name in enumerate(["a", "b", "c"]):
        sup.set_tenant(i, name, raw(name), f"text-{name}", from_assignment=True)
    sup.tick()
    assert running(sup) == {"a", "b"} and sup.waiting == 1  # max_tenants 2, oldest first
    assert "port: 40000" in FakeChild.started[0].text  # metrics moved to the worker's port

    # a crashes: restarted after the backoff, which doubles while it keeps crashing
    a = sup.tenants["a"].child
    assert a is not None
    a.code = 1
    sup.tick()
    assert "a" not in running(sup) and sup.tenants["a"].failures == 1
    assert running(sup) == {"b", "c"}  # its capacity went to the waiting tenant
    sup.tenants["c"].child.code = 7  # type: ignore[union-attr]  # unreachable at start
    sup.tick()
    time.sleep(0.25)
    sup.tick()
    assert running(sup) == {"a", "b"} and sup.waiting == 1  # a first: assigned earliest
    a = sup.tenants["a"].child
    assert a is not None
    a.code = 1  # crashes again at once: the backoff doubles
    sup.tick()
    t = sup.tenants["a"]
    assert t.failures == 2 and 0.3 < t.next_start - time.monotonic() <= 0.4
    assert sup.m.restarts.labels("w", "a")._value.get() == 2

    # a new configuration restarts b with it, at once
    old_b = sup.tenants["b"].child
    sup.set_tenant(1, "b", raw("b", 99), "text-b2", from_assignment=False)
    sup.tick()  # asks the old process to stop
    assert old_b is not None and old_b.stopping_since is not None
    sup.tick()  # reaped, started again
    new_b = sup.tenants["b"].child
    assert new_b is not None and new_b is not old_b and "batch_size: 99" in new_b.text
    assert sup.m.restarts.labels("w", "b")._value.get() == 0  # a wanted stop is no crash

    # removal stops and forgets
    sup.drop_tenant("b")
    sup.tick()
    assert "b" not in sup.tenants and new_b.stopping_since is not None


def test_release_stops_before_returning_and_hold_blocks_starts(sup: Supervisor) -> None:
    sup.set_tenant(3, "x", raw("x"), "tx", from_assignment=True)
    sup.set_tenant(4, "y", raw("y"), "ty", from_assignment=True)
    sup.tick()
    x = sup.tenants["x"].child
    sup.release({3}, lost=False)
    assert x is not None and x.poll() is not None and "x" not in sup.tenants
    assert set(sup.tenants) == {"y"}

    sup.hold_starts(0.3)
    sup.set_tenant(5, "z", raw("z"), "tz", from_assignment=True)
    sup.tick()
    assert "z" not in running(sup)
    time.sleep(0.35)
    sup.tick()
    assert "z" in running(sup)
    sup.stop_everything()
    assert not sup.tenants


class RecordedStatus:
    def __init__(self) -> None:
        self.log: list[tuple[str, str, str | None, str | None]] = []

    def write(
        self, tenant: str, state: str, exit: str | None = None, error: str | None = None
    ) -> None:
        self.log.append((tenant, state, exit, error))

    def forget(self, tenant: str) -> None:
        self.log.append((tenant, "(removed)", None, None))


@pytest.mark.parametrize("code", [2, 4, 5, 6])
def test_a_terminal_exit_fails_the_tenant_until_it_is_put_again(sup: Supervisor, code: int) -> None:
    """Issue 16 item 15: exits a new process cannot get past (configuration, bad row, missing
    permission, watermark regression) are not restarted with backoff forever: the tenant is
    FAILED with its cause, until its configuration changes or an operator puts it again."""
    status = RecordedStatus()
    sup.status = status
    sup.set_tenant(0, "a", raw("a"), "text-a", from_assignment=True)
    sup.tick()
    child = sup.tenants["a"].child
    assert child is not None
    child.code = code
    child.said = "tenant 'a', entity 'customers', key 7: field 'email' ..."  # type: ignore[attr-defined]
    sup.tick()
    time.sleep(0.5)  # longer than the largest backoff: a restart would have happened
    sup.tick()
    t = sup.tenants["a"]
    assert t.child is None and t.failed == child.said  # type: ignore[attr-defined]
    assert len(FakeChild.started) == 1
    assert sup.summary()["failed"] == 1 and sup.summary()["restarting"] == 0
    assert sup.m.failed.labels("w")._value.get() == 1
    tenant, state, exit, error = status.log[-1]
    assert (tenant, state, error) == ("a", "FAILED", child.said)  # type: ignore[attr-defined]
    assert exit is not None and exit.startswith(f"exited {code} (")

    sup.set_tenant(0, "a", raw("a"), "text-a", from_assignment=False)  # put again, same text
    sup.tick()
    assert len(FakeChild.started) == 2 and sup.tenants["a"].failed is None
    assert status.log[-1][:2] == ("a", "STARTING")
    restarted = sup.tenants["a"].child
    assert restarted is not None
    restarted.code = code
    sup.tick()
    assert sup.tenants["a"].failed is not None
    sup.set_tenant(0, "a", raw("a", 5), "text-a2", from_assignment=False)  # a new config
    sup.tick()
    assert len(FakeChild.started) == 3 and "batch_size: 5" in FakeChild.started[-1].text


def test_a_transient_exit_is_restarted_and_says_why(sup: Supervisor) -> None:
    status = RecordedStatus()
    sup.status = status
    sup.set_tenant(0, "a", raw("a"), "text-a", from_assignment=True)
    sup.tick()
    child = sup.tenants["a"].child
    assert child is not None
    child.code = 7
    child.said = "database not reachable"  # type: ignore[attr-defined]
    sup.tick()
    assert status.log[-1] == (
        "a",
        "RESTARTING",
        "exited 7 (unreachable)",
        "database not reachable",
    )
    time.sleep(0.25)
    sup.tick()
    assert len(FakeChild.started) == 2 and sup.tenants["a"].failed is None


def test_readiness_names_the_failed_check(tmp_path: Path) -> None:
    from poller.fleet.worker import Worker

    cfg = WorkerConfig.model_validate({"state_dir": str(tmp_path)})
    w = Worker(cfg)
    ok, body = w.readiness(kafka=True)
    assert not ok and body["checks"] == {"group": False, "kafka": True, "capacity": True}
    w.joined = True
    assert w.readiness(kafka=True)[0]
    w.sup.waiting = 2  # tenants beyond max_tenants: add workers
    ok, body = w.readiness(kafka=False)
    assert not ok and body["checks"] == {"group": True, "kafka": False, "capacity": False}
    w.sup.stop_everything()
