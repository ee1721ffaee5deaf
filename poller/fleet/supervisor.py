"""The tenants one worker owns and their child processes: start, restart with backoff, restart
on a configuration change, stop on removal, revocation or loss, and at most `max_tenants`.

A child that exits with an error a new process cannot get past (errors.restart_helps: a bad
configuration, a bad row, a missing permission, a watermark regression) is not restarted: its
tenant is FAILED, with the exit and the error it printed, until its configuration changes or an
operator re-puts it (`poller tenants restart`). Each change of state goes to the status topic.

Everything here runs on the worker's main thread, except the readiness probe of starting
children, a daemon thread that only sets `Child.connected_at`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poller.errors import describe_exit, restart_helps
from poller.fleet.child import Child, free_port, stop_all
from poller.fleet.metrics import WorkerMetrics, fetch_text
from poller.fleet.settings import WorkerConfig, child_config_text
from poller.fleet.status import StatusSink

log = logging.getLogger(__name__)


@dataclass
class Tenant:
    name: str
    partition: int
    raw: dict[str, Any]
    text: str  # the record's configuration text (what the running child must match)
    assigned_at: float
    from_assignment: bool  # its start is a takeover (partition assigned), not a new tenant
    child: Child | None = None
    running_text: str | None = None
    failures: int = 0
    next_start: float = 0.0
    removed: bool = False
    observed: bool = False  # takeover time recorded for the current child
    failed: str | None = None  # FAILED: why (no restart until a new config or a re-put)


class _NoStatus:
    def write(
        self, tenant: str, state: str, exit: str | None = None, error: str | None = None
    ) -> None:
        pass

    def forget(self, tenant: str) -> None:
        pass


class Supervisor:
    def __init__(
        self,
        cfg: WorkerConfig,
        metrics: WorkerMetrics,
        state_dir: Path,
        status: StatusSink | None = None,
    ) -> None:
        self.cfg = cfg
        self.status: StatusSink = status or _NoStatus()
        self.m = metrics
        self.w = metrics.worker
        self.tenants: dict[str, Tenant] = {}
        self.config_dir = state_dir / "tenants"
        self.limits_dir = state_dir / "limits"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.limits_dir.mkdir(parents=True, exist_ok=True)
        self._hold_until = 0.0
        self.waiting = 0
        self._stop_probe = threading.Event()
        threading.Thread(target=self._probe_loop, daemon=True, name="child-probe").start()

    # -- what the group and the tenants topic say ----------------------------------------------

    def set_tenant(
        self, partition: int, name: str, raw: dict[str, Any], text: str, from_assignment: bool
    ) -> None:
        t = self.tenants.get(name)
        if t is None or t.removed:
            now = time.monotonic()
            self.tenants[name] = Tenant(name, partition, raw, text, now, from_assignment)
            self.m.tenant_added(name)
            return
        if t.text != text:
            log.info("tenant %s: configuration changed; restarting", name, extra={"tenant": name})
            t.raw, t.text, t.failures, t.next_start = raw, text, 0, 0.0
            t.failed = None
        elif t.failed is not None:  # the same configuration put again: an operator's restart
            log.info("tenant %s: put again; restarting after FAILED", name, extra={"tenant": name})
            t.failures, t.next_start, t.failed = 0, 0.0, None

    def drop_tenant(self, name: str) -> None:
        t = self.tenants.get(name)
        if t is None:
            return
        log.info("tenant %s: removed; stopping", name, extra={"tenant": name})
        t.removed = True
        self.status.forget(name)
        if t.child is not None:
            t.child.terminate()
        else:
            self._forget(t)

    def release(self, partitions: set[int], lost: bool) -> None:
        """Stop (and forget) every tenant of these partitions, waiting until they exited: a
        revoked partition may be handed on only after its tenants stopped. Lost ones may
        already run elsewhere, so they get a short deadline."""
        gone = [t for t in self.tenants.values() if t.partition in partitions]
        children = [t.child for t in gone if t.child is not None]
        if children:
            log.info(
                "stopping %d tenant(s) of %s partition(s) %s",
                len(children),
                "lost" if lost else "revoked",
                sorted(partitions),
            )
            deadline = self.cfg.stop_timeout_s
            stop_all(children, min(5.0, deadline) if lost else deadline)
        for t in gone:
            if t.child is not None:
                self._reaped(t, t.child)
            self._forget(t)

    def stop_everything(self) -> None:
        self.release({t.partition for t in self.tenants.values()}, lost=False)
        self._stop_probe.set()

    def hold_starts(self, seconds: float) -> None:
        """No (re)start for a while: after the worker was frozen, its ownership is in doubt
        until the group has answered again."""
        self._hold_until = max(self._hold_until, time.monotonic() + seconds)

    # -- the loop --------------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        for t in list(self.tenants.values()):
            child = t.child
            if child is None:
                continue
            if child.poll() is not None:
                self._reaped(t, child)
                if t.removed:
                    self._forget(t)
                continue
            if (t.removed or t.running_text != t.text) and child.stopping_since is None:
                child.terminate()
            child.kill_if_overdue(self.cfg.stop_timeout_s)
            if child.connected_at is not None and not t.observed:
                t.observed = True
                took = child.connected_at - t.assigned_at if t.from_assignment else None
                self.m.tenant_running(t.name, took)
                self.status.write(t.name, "RUNNING")
                if took is not None:
                    log.info(
                        "tenant %s: taken over in %.2fs", t.name, took, extra={"tenant": t.name}
                    )
        alive = sum(1 for t in self.tenants.values() if t.child is not None)
        waiting = 0
        if now >= self._hold_until:
            queue = sorted(
                (
                    t
                    for t in self.tenants.values()
                    if t.child is None and not t.removed and t.failed is None
                ),
                key=lambda t: (t.assigned_at, t.name),
            )
            for t in queue:
                if t.next_start > now:
                    continue
                if alive >= self.cfg.max_tenants:
                    waiting += 1
                    continue
                self._start(t)
                alive += 1
        self._gauges(alive, waiting)

    def _gauges(self, alive: int, waiting: int) -> None:
        self.m.tenant_counts(
            owned=sum(1 for t in self.tenants.values() if not t.removed),
            running=alive,
            waiting=waiting,
            failed=sum(1 for t in self.tenants.values() if t.failed is not None),
        )
        self.waiting = waiting

    def _start(self, t: Tenant) -> None:
        port = free_port()
        path = self.config_dir / f"{_slug(t.name)}.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(child_config_text(t.raw, port), encoding="utf-8")
        tmp.replace(path)
        scope = self.cfg.tenant_secrets
        if scope is None:
            t.child = Child(t.name, path, port, self.limits_dir)
        else:  # the child gets a filtered environment
            t.child = Child(t.name, path, port, self.limits_dir, list(scope.allow_env))
        t.running_text = t.text
        t.observed = False
        self.status.write(t.name, "STARTING")

    def _reaped(self, t: Tenant, child: Child) -> None:
        code = child.poll()
        t.child = None
        self.m.tenant_down(t.name)
        wanted = child.stopping_since is not None
        how = describe_exit(code if code is not None else -9)
        if wanted or t.removed:
            log.info("tenant %s: stopped (%s)", t.name, how, extra={"tenant": t.name})
            t.from_assignment = False
            return
        ran = time.monotonic() - child.started
        reason = child.reason()
        if code is not None and not restart_helps(code):
            t.failed = reason or how
            self.status.write(t.name, "FAILED", how, reason)
            log.error(
                "tenant %s: pid %d %s after %.1fs: FAILED, not restarted until its "
                "configuration changes or it is put again (poller tenants restart %s): %s",
                t.name,
                child.pid,
                how,
                ran,
                t.name,
                reason or "(no error message)",
                extra={"tenant": t.name},
            )
            return
        r = self.cfg.restart
        t.failures = 1 if ran >= r.healthy_after_s else t.failures + 1
        delay = min(r.max_backoff_s, r.initial_backoff_s * 2 ** (t.failures - 1))
        t.next_start = time.monotonic() + delay
        self.m.tenant_restarted(t.name)
        self.status.write(t.name, "RESTARTING", how, reason)
        log.warning(
            "tenant %s: pid %d %s after %.1fs; restart %d in %.1fs%s",
            t.name,
            child.pid,
            how,
            ran,
            t.failures,
            delay,
            f": {reason}" if reason else "",
            extra={"tenant": t.name},
        )

    def _forget(self, t: Tenant) -> None:
        if self.tenants.get(t.name) is t:
            del self.tenants[t.name]
        self.m.forget_tenant(t.name)
        path = self.config_dir / f"{_slug(t.name)}.yaml"
        path.unlink(missing_ok=True)

    # -- the probe -------------------------------------------------------------------------------

    def ports(self) -> list[int]:
        return [t.child.port for t in list(self.tenants.values()) if t.child is not None]

    def _probe_loop(self) -> None:
        """Marks a starting child connected once its metrics say Kafka is up: it has run
        init_transactions (fencing the previous owner) and read its watermarks."""
        while not self._stop_probe.wait(0.25):
            for t in list(self.tenants.values()):
                child = t.child
                if child is None or child.connected_at is not None:
                    continue
                text = fetch_text(child.port, timeout_s=1.0)
                if any(
                    line.startswith("poller_kafka_up{") and line.endswith(" 1.0")
                    for line in text.splitlines()
                ):
                    child.connected_at = time.monotonic()

    def summary(self) -> dict[str, int]:
        ts = [t for t in self.tenants.values() if not t.removed]
        return {
            "assigned": len(ts),
            "running": sum(1 for t in ts if t.child is not None and t.child.connected_at),
            "starting": sum(1 for t in ts if t.child is not None and not t.child.connected_at),
            "restarting": sum(
                1 for t in ts if t.child is None and t.failures > 0 and t.failed is None
            ),
            "failed": sum(1 for t in ts if t.failed is not None),
            "waiting": self.waiting,
        }


def _slug(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60]
    return f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:10]}"
