"""A fleet of workers shares the tenants of one PostgreSQL database through Kafka's consumer
group: every row once, across worker crashes, freezes and scale-out."""

from __future__ import annotations

import json
import re
import signal
import time

import psutil
import pytest
import yaml

from tests.integration.fleet.harness import (
    SESSION_TIMEOUT_S,
    Fleet,
    Inserter,
    start_prometheus,
    wait_for,
)
from tests.integration.ops.harness import http_get
from tests.unit.ops.test_dashboards import load_dashboard, panel_queries

TENANTS_PER_WORKER = 'count by (worker) (poller_worker_tenant_up{tenant=~"$tenant"})'


def every_tenant(expr: str) -> str:
    """A dashboard query as Grafana sends it with tenant = All."""
    return expr.replace("$tenant", ".*").replace("$__rate_interval", "1m")


pytestmark = pytest.mark.integration


def test_three_workers_twelve_tenants_every_row_once(fleet: Fleet) -> None:
    tenants = fleet.spread_tenants()  # 12, one per partition: 4 per worker
    workers = [fleet.start_worker() for _ in range(3)]
    for t in tenants:
        fleet.put(fleet.tenant_config(t))
    inserter = Inserter(fleet.pg_url, tenants)
    inserter.start()
    owners = fleet.wait_all_running(tenants, timeout=120)
    per_worker = {w.label: sum(1 for o in owners.values() if o == w.label) for w in workers}
    assert all(n > 0 for n in per_worker.values()), f"every worker runs tenants: {per_worker}"
    for w in workers:  # /readyz per worker: in the group, Kafka answers, nothing waits
        status, body, _ctype = http_get(f"http://127.0.0.1:{w.port}/readyz")
        ready = json.loads(body)
        assert status == 200 and ready["ready"], (w.label, ready)
        assert ready["tenants"]["assigned"] == per_worker[w.label] == 4, ready
    # One scrape target per worker carries the worker's metrics and its tenants': the
    # dashboard's fleet panels and the tenants' own series come from the same targets.
    prom, prom_proc = start_prometheus(fleet.dir, [f"127.0.0.1:{w.port}" for w in workers])
    try:
        names = {w.label: w.log().split("worker ", 1)[1].split(" ", 1)[0] for w in workers}
        want = {names[label]: n for label, n in per_worker.items()}

        def panel_shows_every_tenant() -> bool:
            rows = prom.query(every_tenant(TENANTS_PER_WORKER))
            got = {r["metric"]["worker"]: int(float(r["value"][1])) for r in rows}
            published = prom.query("count(poller_rows_published_total > 0)")
            return got == want and bool(published) and published[0]["value"][1] == "12"

        wait_for(panel_shows_every_tenant, 60, "Prometheus to show 12 tenants on 3 workers")
        for title, _ref, expr in panel_queries(load_dashboard()):
            if "poller_worker_" in expr:  # rate()/increase() need two scrapes
                wait_for(lambda e=expr: prom.query(every_tenant(e)), 30, f"panel {title!r}")
    finally:
        prom_proc.stop(timeout=15)
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

    children = victim.family()[1:]
    assert len(children) == len(moved), victim.describe()
    killed_at = time.monotonic()
    victim.kill()  # SIGKILL to the worker only: its tenants' processes must die with it
    wait_for(
        lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in children),
        10,
        "the dead worker's tenant processes to die with it (no orphans)",
        fleet.workers,
        interval=0.1,
    )
    orphans_gone = time.monotonic() - killed_at
    survivors = [w for w in workers if w is not victim]
    fleet.wait_all_running(tenants, timeout=90, workers=survivors)
    takeover = time.monotonic() - killed_at
    print(
        f"\nkill -9 of {victim.label}: its {len(moved)} tenant(s) ran again on the survivors "
        f"after {takeover:.1f}s (session timeout {SESSION_TIMEOUT_S}s); its tenant processes "
        f"had died with it within {orphans_gone:.2f}s"
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


def test_scale_out_moves_a_quarter_and_never_runs_a_tenant_twice(fleet: Fleet) -> None:
    tenants = fleet.spread_tenants()  # 12, one per partition
    workers = [fleet.start_worker() for _ in range(3)]
    for t in tenants:
        fleet.put(fleet.tenant_config(t))
    inserter = Inserter(fleet.pg_url, tenants)
    inserter.start()
    before = fleet.wait_all_running(tenants, timeout=120)
    time.sleep(2)

    fourth = fleet.start_worker()
    workers.append(fourth)

    def settled() -> dict[str, str] | None:
        owners = fleet.wait_all_running(tenants, timeout=60)
        return owners if fourth.label in owners.values() else None

    after = wait_for(settled, 90, "the fourth worker to run tenants", fleet.workers, interval=1)
    time.sleep(3)  # let a second cooperative round, if any, finish
    after = fleet.wait_all_running(tenants, timeout=60)
    moved = sorted(t for t in tenants if before[t] != after[t])
    counts = {w.label: sum(1 for o in after.values() if o == w.label) for w in workers}
    print(
        f"\nscale 3 -> 4: {len(moved)} of {len(tenants)} tenants moved; tenants per worker {counts}"
    )
    assert 1 <= len(moved) <= 4, (moved, before, after)
    assert all(t in moved for t, o in after.items() if o == fourth.label)

    # Never two at once: each moved tenant stopped on its old worker before it started on the
    # new one, and no tenant process anywhere was fenced (which an overlap would cause).
    by_label = {w.label: w for w in workers}
    for t in moved:
        stopped = [at for at, _m in by_label[before[t]].events(rf"tenant {t}: stopped")]
        started = [at for at, _m in by_label[after[t]].events(rf"tenant {t}: started")]
        assert stopped and started and max(stopped) <= max(started), (t, stopped, started)
    for w in workers:
        assert "exited 3" not in w.log(), w.describe()

    inserter.stop()
    fleet.wait_caught_up(tenants, timeout=90)
    for t in tenants:
        fleet.verify_exactly_once(t)


def test_tenants_cli_put_list_rm_on_the_kip848_protocol(fleet: Fleet) -> None:
    tenants = [fleet.tenant_name(i) for i in range(3)]
    # The next-generation group protocol (KIP-848): the broker assigns the partitions.
    workers = [fleet.start_worker(protocol="consumer") for _ in range(2)]
    files = {}
    for t in tenants:
        files[t] = fleet.dir / f"{t}.yaml"
        files[t].write_text(yaml.safe_dump(fleet.tenant_config(t), sort_keys=False))
    out = fleet.cli("tenants", "put", "--config", str(files[tenants[0]]))
    assert out.returncode == 0 and "put tenant" in out.stdout, out.stderr
    for t in tenants[1:]:  # the same, in-process (each command costs an interpreter start)
        fleet.put(fleet.tenant_config(t))
    inserter = Inserter(fleet.pg_url, tenants)
    inserter.start()
    owners = fleet.wait_all_running(tenants, timeout=120)

    names = {w.label: w.log().split("worker ", 1)[1].split(" ", 1)[0] for w in workers}

    def listed() -> dict[str, dict[str, object]] | None:
        """`tenants list` once it names, for every tenant, the worker that runs it (seen from
        the workers themselves): under KIP-848 the broker reports an assignment a moment after
        the member runs it, and the second worker's join may still move a tenant."""
        out = fleet.cli("tenants", "list", "--json")
        assert out.returncode == 0, out.stderr
        found = {r["tenant"]: r for r in json.loads(out.stdout)}
        running = fleet.owners(workers)
        agree = all(
            len(running.get(t, [])) == 1 and found.get(t, {}).get("worker") == names[running[t][0]]
            for t in tenants
        )
        return found if agree else None

    rows = wait_for(listed, 90, "tenants list to name the worker running each tenant", workers)
    assert set(rows) == set(tenants), rows
    owners = {t: fleet.owners(workers)[t][0] for t in tenants}

    # A literal password is refused: the tenants topic stores configurations as written.
    leaky = fleet.tenant_config("leaky")
    leaky["source"]["url"] = "postgresql+psycopg2://poller:s3cr3t-Leak@127.0.0.1:5432/crm"
    (fleet.dir / "leaky.yaml").write_text(yaml.safe_dump(leaky))
    out = fleet.cli("tenants", "put", "--config", str(fleet.dir / "leaky.yaml"))
    assert out.returncode == 2 and "password is written out" in out.stderr, out.stderr
    assert "s3cr3t-Leak" not in out.stderr + out.stdout

    # rm: the tenant stops wherever it runs, and its new rows are not published.
    gone, changed, kept = tenants
    owner = next(w for w in workers if w.label == owners[gone])
    out = fleet.cli("tenants", "rm", gone)
    assert out.returncode == 0, out.stderr
    wait_for(lambda: owner.events(rf"tenant {gone}: stopped"), 60, f"{gone} to stop", workers)
    assert gone not in fleet.owners()
    rows_at_rm = fleet.source_rows(gone)

    # put with a changed configuration restarts that tenant (new process, new settings).
    changer = next(w for w in workers if w.label == owners[changed])
    starts = len(changer.events(rf"tenant {changed}: started"))
    files[changed].write_text(
        yaml.safe_dump(fleet.tenant_config(changed, batch_size=7), sort_keys=False)
    )
    out = fleet.cli("tenants", "put", "--config", str(files[changed]))
    assert out.returncode == 0, out.stderr
    wait_for(
        lambda: (
            len(changer.events(rf"tenant {changed}: started")) > starts
            and changed in changer.tenants_up()
        ),
        90,
        f"{changed} to restart with its new configuration",
        workers,
    )
    assert changer.events(rf"tenant {changed}: configuration changed; restarting")
    # A tenant process that dies is restarted (with backoff) by its worker.
    keeper = next(w for w in workers if w.label == owners[kept])
    pid = int(keeper.events(rf"tenant {kept}: started \(pid (\d+)")[-1][1].group(1))
    psutil.Process(pid).kill()
    wait_for(
        lambda: (
            keeper.events(rf"tenant {kept}: pid {pid} killed by SIGKILL")
            and kept in keeper.tenants_up()
        ),
        90,
        f"{kept} to be restarted after its process was killed",
        workers,
    )
    assert re.search(
        rf'poller_worker_child_restarts_total\{{tenant="{kept}",[^}}]*\}} 1\.0', keeper.metrics()
    ), keeper.metrics()
    time.sleep(2)
    inserter.stop()
    fleet.wait_caught_up([changed, kept], timeout=90)
    for t in (changed, kept):
        fleet.verify_exactly_once(t)
    published = fleet.published_ids(gone)
    assert published <= set(rows_at_rm), "rows inserted after `tenants rm` were published"
    assert len(fleet.source_rows(gone)) > len(rows_at_rm), "the inserter kept adding its rows"
    assert fleet.owners().get(gone) is None
    out = fleet.cli("tenants", "rm", gone)
    assert out.returncode == 2 and "no tenant" in out.stdout, out


def test_a_terminal_exit_fails_the_tenant_with_its_cause(fleet: Fleet) -> None:
    """Issue 16 item 15: a tenant whose process exits on a configuration or mapping error is
    FAILED with that error (`tenants list`), not restarted with backoff forever; a corrected
    configuration runs it again."""
    bad, good = fleet.tenant_name(0), fleet.tenant_name(1)
    worker = fleet.start_worker()
    broken = fleet.tenant_config(bad)
    broken["entities"]["customers"]["fields"]["full_name"] = "no_such_column"
    fleet.put(broken)
    fleet.put(fleet.tenant_config(good))
    fleet.wait_all_running([good], timeout=120)

    def listed() -> dict[str, dict[str, object]] | None:
        out = fleet.cli("tenants", "list", "--json")
        assert out.returncode == 0, out.stderr
        rows = {r["tenant"]: r for r in json.loads(out.stdout)}
        return rows if rows.get(bad, {}).get("state") == "FAILED" else None

    rows = wait_for(listed, 90, f"{bad} to be FAILED", [worker])
    assert rows[good]["state"] == "RUNNING", rows[good]
    assert str(rows[bad]["exit"]).startswith("exited 8 ("), rows[bad]  # schema or drift
    assert "no_such_column" in str(rows[bad]["error"]), rows[bad]
    failed_at = time.monotonic()
    # restart.initial_backoff_s is 1 s: a restarted tenant would have started again by now
    wait_for(lambda: time.monotonic() - failed_at > 4, 10, "the backoff to pass")
    assert len(worker.events(rf"tenant {bad}: started")) == 1, worker.describe()
    assert worker.events(rf"tenant {bad}: .*FAILED, not restarted")
    text = fleet.cli("tenants", "list")
    assert re.search(rf"{bad} .* FAILED: exited 8 .*no_such_column", text.stdout), text.stdout

    fleet.put(fleet.tenant_config(bad))  # corrected: runs again
    fleet.wait_all_running([bad, good], timeout=120)
    wait_for(
        lambda: (
            (listed_now := fleet.cli("tenants", "list", "--json")).returncode == 0
            and {r["tenant"]: r["state"] for r in json.loads(listed_now.stdout)}.get(bad)
            == "RUNNING"
        ),
        60,
        f"{bad} to be RUNNING in tenants list",
        [worker],
    )
