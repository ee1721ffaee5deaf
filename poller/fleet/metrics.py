"""The worker's metrics, and its children's merged into the same /metrics answer.

One scrape target per worker: the worker reads each child's /metrics on loopback and appends
the samples under one HELP/TYPE header per metric family (a family's header may appear only
once in the text format). Labels stay bounded: `worker`, plus `tenant` for the tenants the
worker runs now.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from poller import __version__

TAKEOVER_BUCKETS = (0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120)
EVENTS = ("assigned", "revoked", "lost")
_SCRAPE_TIMEOUT_S = 3.0


@dataclass
class WorkerMetrics:
    worker: str
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r, w = self.registry, ("worker",)
        self.tenants = Gauge(
            "poller_worker_tenants", "Tenants in the partitions this worker owns", w, registry=r
        )
        self.running = Gauge(
            "poller_worker_tenants_running", "Tenant processes alive", w, registry=r
        )
        self.waiting = Gauge(
            "poller_worker_tenants_waiting",
            "Tenants this worker owns but does not run: over max_tenants",
            w,
            registry=r,
        )
        self.failed = Gauge(
            "poller_worker_tenants_failed",
            "Tenants stopped on an error a restart cannot fix (FAILED): they wait for a new "
            "configuration or `poller tenants restart`",
            w,
            registry=r,
        )
        self.partitions = Gauge(
            "poller_worker_partitions", "Tenants-topic partitions owned", w, registry=r
        )
        self.tenant_up = Gauge(
            "poller_worker_tenant_up",
            "1 once the tenant's process has fenced any older writer and loaded its "
            "watermarks, 0 while it starts or waits to restart",
            ("worker", "tenant"),
            registry=r,
        )
        self.restarts = Counter(
            "poller_worker_child_restarts",
            "Tenant processes that ended unexpectedly and were restarted",
            ("worker", "tenant"),
            registry=r,
        )
        self.rebalances = Counter(
            "poller_worker_rebalances",
            "Consumer group rebalance events (assigned, revoked, lost)",
            ("worker", "event"),
            registry=r,
        )
        self.takeover = Histogram(
            "poller_worker_takeover_seconds",
            "From a partition's assignment to its tenant's process running (fenced the old "
            "writer, watermarks loaded)",
            w,
            buckets=TAKEOVER_BUCKETS,
            registry=r,
        )
        self.build = Info("poller_build", "Build information", registry=r)
        self.build.info({"version": __version__})
        for g in (self.tenants, self.running, self.waiting, self.partitions):
            g.labels(self.worker).set(0)
        # the worker's own series, bound once; a tenant's come and go with it (forget_tenant)
        self._events = {e: self.rebalances.labels(self.worker, e) for e in EVENTS}
        self._takeover = self.takeover.labels(self.worker)

    # -- what the worker records ---------------------------------------------------------------

    def tenant_added(self, tenant: str) -> None:
        """A tenant to run: down until its process is up; restarts at 0 (so increase() sees
        the first one)."""
        self.tenant_up.labels(self.worker, tenant).set(0)
        self.restarts.labels(self.worker, tenant)

    def tenant_running(self, tenant: str, takeover_s: float | None) -> None:
        """Its process fenced any older writer and loaded the watermarks; `takeover_s`: from
        the partition's assignment (None: not started by an assignment)."""
        self.tenant_up.labels(self.worker, tenant).set(1)
        if takeover_s is not None:
            self._takeover.observe(takeover_s)

    def tenant_down(self, tenant: str) -> None:
        self.tenant_up.labels(self.worker, tenant).set(0)

    def tenant_restarted(self, tenant: str) -> None:
        """Its process ended unexpectedly; it starts again after a backoff."""
        self.restarts.labels(self.worker, tenant).inc()

    def tenant_counts(self, owned: int, running: int, waiting: int, failed: int) -> None:
        w = self.worker
        self.tenants.labels(w).set(owned)
        self.running.labels(w).set(running)
        self.waiting.labels(w).set(waiting)
        self.failed.labels(w).set(failed)

    def rebalanced(self, event: str) -> None:
        """A rebalance event (assigned, revoked, lost) moved partitions of this worker."""
        self._events[event].inc()

    def partitions_owned(self, count: int) -> None:
        self.partitions.labels(self.worker).set(count)

    def forget_tenant(self, tenant: str) -> None:
        for metric in (self.tenant_up, self.restarts):
            with contextlib.suppress(KeyError):
                metric.remove(self.worker, tenant)


def fetch_text(port: int, timeout_s: float = _SCRAPE_TIMEOUT_S) -> str:
    """A child's /metrics text; empty if it does not answer (starting, stopping)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout_s) as resp:
            body: bytes = resp.read()
            return body.decode("utf-8", "replace")
    except OSError:
        return ""


def merge_exposition(texts: Iterable[str], skip: set[str]) -> str:
    """Prometheus texts merged: each family's HELP/TYPE once, then every text's samples of it.
    Families named in `skip` (the worker's own, e.g. poller_build_info) are left out."""
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    seen: set[str] = set()
    for text in texts:
        family = ""
        for line in text.splitlines():
            if not line:
                continue
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                family = line.split(" ", 3)[2]
                if family not in headers:
                    headers[family] = []
                    samples[family] = []
                if len(headers[family]) < 2 and line not in headers[family]:
                    headers[family].append(line)
                continue
            if line.startswith("#") or family in skip or not family:
                continue
            if line not in seen:  # identical series from two children: keep one
                seen.add(line)
                samples[family].append(line)
    out: list[str] = []
    for family, head in headers.items():
        if family in skip or not samples[family]:
            continue
        out.extend(head)
        out.extend(samples[family])
    return "\n".join(out) + ("\n" if out else "")


class Exposition:
    """The worker's /metrics body: its own registry, then its children's samples."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="scrape")
        self._own_families = {
            line.split(" ", 3)[2]
            for line in generate_latest(metrics.registry).decode().splitlines()
            if line.startswith("# TYPE ")
        }

    def render(self, ports: list[int]) -> bytes:
        own = generate_latest(self.metrics.registry)
        texts = list(self._pool.map(fetch_text, ports))
        return own + merge_exposition(texts, self._own_families).encode()
