"""A fleet of workers shares the tenants of one PostgreSQL database through Kafka's consumer
group: every row once, across worker crashes, freezes and scale-out."""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from tests.integration.fleet.harness import SESSION_TIMEOUT_S, Fleet, Inserter, wait_for

pytestmark = pytest.mark.integration


def test_three_workers_twelve_tenants_every_row_once(fleet: Fleet) -> None:
    tenants = [fleet.tenant_name(i) for i in range(12)]
    workers = [fleet.start_worker() for _ in range(3)]
    for t in tenants:
        fleet.put(fleet.tenant_config(t))
    inserter = Inserter(fleet.pg_url, tenants)
    inserter.start()
    owners = fleet.wait_all_running(tenants, timeout=120)
    per_worker = {w.label: sum(1 for o in owners.values() if o == w.label) for w in workers}
    assert all(n > 0 for n in per_worker.values()), f"every worker runs tenants: {per_worker}"
    time.sleep(5)  # rows keep arriving while all twelve run
    inserter.stop()
    fleet.wait_caught_up(tenants, timeout=90)
    total = sum(fleet.verify_exactly_once(t) for t in tenants)
    print(f"\n12 tenants on 3 workers {per_worker}: {total} rows, each exactly once")


def test_kill_9_moves_tenants_to_the_survivors(fleet: Fleet) -> None:
    tenants = [fleet.tenant_name(i) for i in range(6)]
    workers = [fleet.start_worker() for _ in range(3)]
    for t in tenants:
        fleet.put(fleet.tenant_config(t))
    inserter = Inserter(fleet.pg_url, tenants)
    inserter.start()
    owners = fleet.wait_all_running(tenants, timeout=120)
    victim = max(workers, key=lambda w: sum(1 for o in owners.values() if o == w.label))
    moved = sorted(t for t, o in owners.items() if o == victim.label)
    time.sleep(2)

    killed_at = time.monotonic()
    victim.signal_all(signal.SIGKILL)  # the worker and its tenants, at once
    survivors = [w for w in workers if w is not victim]
    fleet.wait_all_running(tenants, timeout=90, workers=survivors)
    takeover = time.monotonic() - killed_at
    print(
        f"\nkill -9 of {victim.label}: its {len(moved)} tenant(s) ran again on the survivors "
        f"after {takeover:.1f}s (session timeout {SESSION_TIMEOUT_S}s)"
    )
    # Detection takes the session timeout; rebalancing and starting the tenant process (its
    # init_transactions fences the dead writer) come on top.
    assert takeover < SESSION_TIMEOUT_S + 30, takeover

    time.sleep(3)
    inserter.stop()
    fleet.wait_caught_up(tenants, timeout=90)
    for t in tenants:
        fleet.verify_exactly_once(t)


def test_frozen_worker_is_fenced_and_commits_nothing(fleet: Fleet) -> None:
    tenants = [fleet.tenant_name(i) for i in range(4)]
    workers = [fleet.start_worker() for _ in range(2)]
    for t in tenants:
        fleet.put(fleet.tenant_config(t))
    inserter = Inserter(fleet.pg_url, tenants)
    inserter.start()
    owners = fleet.wait_all_running(tenants, timeout=120)
    frozen = max(workers, key=lambda w: sum(1 for o in owners.values() if o == w.label))
    other = next(w for w in workers if w is not frozen)
    moved = sorted(t for t, o in owners.items() if o == frozen.label)
    family = frozen.family()
    old_children = family[1:]
    assert len(old_children) == len(moved), frozen.describe()
    time.sleep(2)

    # A frozen machine: the worker and its tenants' processes stop mid-whatever.
    frozen.signal_all(signal.SIGSTOP)
    stopped_at = time.monotonic()
    fleet.wait_all_running(tenants, timeout=90, workers=[other])
    print(
        f"\nSIGSTOP {frozen.label}: {moved} taken over after {time.monotonic() - stopped_at:.1f}s"
    )

    # Every moved tenant's new process has run init_transactions, so the old ones are fenced.
    # Wake the old tenant processes first, their worker later: they find new rows, try to
    # publish them, and the broker refuses (the worst case: a zombie that keeps working).
    for p in old_children:
        p.send_signal(signal.SIGCONT)

    def old_ended() -> bool:
        return all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in old_children)

    wait_for(old_ended, 60, "the frozen worker's old tenant processes to end", fleet.workers)
    family[0].send_signal(signal.SIGCONT)
    wait_for(
        lambda: frozen.events(r"lost partitions"),
        60,
        "the woken worker to see its loss",
        fleet.workers,
    )

    def fenced_exits() -> dict[str, str] | None:
        found = {
            t: m.group(0) for t in moved for _at, m in frozen.events(rf"tenant {t}: .*exited 3.*")
        }
        return found if len(found) == len(moved) else None

    exits = wait_for(
        fenced_exits, 60, "each old tenant process to have exited fenced (3)", fleet.workers
    )
    print("the frozen worker's tenant processes after waking up:\n  " + "\n  ".join(exits.values()))
    # Whatever they wrote after waking up was aborted; read_committed sees each row once.
    time.sleep(2)
    inserter.stop()
    fleet.wait_caught_up(tenants, timeout=90)
    for t in tenants:
        fleet.verify_exactly_once(t)
    aborted = {t: fleet.aborted_messages(t) for t in moved}
    state = "alive (rejoined the group)" if frozen.alive() else f"exited {frozen.proc.returncode}"
    print(f"messages aborted per moved tenant {aborted}; the woken worker is {state}")
    assert frozen.alive() or frozen.proc.returncode == 0, frozen.describe()
