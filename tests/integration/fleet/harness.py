"""Harness of the fleet tests: real `poller worker` processes (each running real `poller run`
children) against the real Kafka and one real PostgreSQL database shared by every tenant.

* `Fleet` owns one test's names (topic prefix, tenants topic, group), the workers' config,
  the tenants' configs (their database password is a `${FLEET_PG_PASSWORD}` reference, resolved
  on the worker), the worker processes and their logs, and reads results back.
* `Inserter` adds rows for every tenant continuously, in id order (autocommit, one thread).
* Every wait is bounded and fails with the workers' log tails.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
import sqlalchemy as sa
import yaml
from confluent_kafka.admin import AdminClient
from sqlalchemy.pool import NullPool

from poller.fleet import tenants as tenants_topic
from poller.fleet.settings import WorkerConfig
from poller.kafka import watermark
from tests.integration.conftest import REPO_ROOT
from tests.integration.faults.readback import compare, decode_topic, read_committed
from tests.integration.faults.sources import SourceRow
from tests.integration.faults.waits import free_port, poller_argv
from tests.integration.ops.harness import PROMETHEUS, Proc, Prom, http_get
from tests.integration.procs import LoggedProcess

T = TypeVar("T")

PASSWORD_ENV = "FLEET_PG_PASSWORD"
SESSION_TIMEOUT_S = 6  # the broker's group.min.session.timeout.ms
_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


class WorkerProc(LoggedProcess):
    """One `poller worker` process; stdout and stderr (its children's too) in one log file."""

    def __init__(self, argv: list[str], log_path: Path, label: str, port: int, env: dict[str, str]):
        super().__init__(argv, log_path, label, env)
        self.port = port

    def family(self) -> list[psutil.Process]:
        """The worker and its tenant processes."""
        try:
            me = psutil.Process(self.pid)
            return [me, *me.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def signal_all(self, sig: signal.Signals) -> None:
        for p in self.family():
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)

    def events(self, pattern: str) -> list[tuple[float, re.Match[str]]]:
        """(unix time, match) of every log line matching `pattern` (worker lines only)."""
        out = []
        for line in self.log().splitlines():
            m = _LOG_TIME.match(line)
            found = re.search(pattern, line)
            if m and found:
                at = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                out.append((at, found))
        return out

    def metrics(self, timeout: float = 5.0) -> str:
        import urllib.request

        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}/metrics", timeout=timeout
            ) as resp:
                body: bytes = resp.read()
                return body.decode()
        except OSError:
            return ""

    def tenants_up(self) -> set[str]:
        """Tenants whose process runs here and has fenced any older writer."""
        return set(
            re.findall(
                r'^poller_worker_tenant_up\{tenant="([^"]+)",[^}]*\} 1\.0$',
                self.metrics(),
                re.MULTILINE,
            )
        )

    def close(self) -> None:
        for p in self.family():  # SIGKILL, the tenants' processes too (stopped ones first)
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGCONT)
                p.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=30)
        self._closed()


class Inserter(threading.Thread):
    """Inserts one row per tenant every `interval` seconds until stopped."""

    def __init__(self, url: str, tenants: Sequence[str], interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="inserter")
        self.engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        self.tenants = list(tenants)
        self.interval = interval
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.engine.connect() as conn:
                while not self.halt.wait(self.interval):
                    insert_rows(conn, self.tenants, 1)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)
        self.engine.dispose()
        assert self.error is None, f"inserter failed: {self.error!r}"


def insert_rows(conn: sa.Connection, tenants: Sequence[str], per_tenant: int) -> None:
    conn.execute(
        sa.text("INSERT INTO customers (tenant, full_name) VALUES (:t, :n)"),
        [
            {"t": t, "n": f"{t} customer {uuid.uuid4().hex[:8]} ünïcode"}
            for _ in range(per_tenant)
            for t in tenants
        ],
    )


def create_source(url: str) -> None:
    engine = sa.create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE customers (id bigserial PRIMARY KEY, tenant text NOT NULL, "
                "full_name text NOT NULL, updated_at timestamp(6) NOT NULL DEFAULT now())"
            )
        )
        conn.execute(sa.text("CREATE INDEX customers_tenant ON customers (tenant, id)"))
    engine.dispose()


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    workers: Sequence[WorkerProc] = (),
    interval: float = 0.3,
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = "\n".join(w.describe() for w in workers)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(interval)


def start_prometheus(tmp: Path, targets: Sequence[str]) -> tuple[Prom, Proc]:
    """A real Prometheus scraping the workers every second (one target per worker)."""
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed (scripts/services up installs it)")
    port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s"},
                "scrape_configs": [
                    {"job_name": "poller", "static_configs": [{"targets": list(targets)}]}
                ],
            }
        )
    )
    proc = Proc(
        [
            PROMETHEUS,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp / "prometheus.log",
    )
    prom = Prom(f"http://127.0.0.1:{port}")

    def ready() -> bool:
        try:
            return http_get(f"{prom.url}/-/ready", 2)[0] == 200
        except OSError:
            return False

    wait_for(ready, 60, "Prometheus to be ready")
    return prom, proc


class Fleet:
    def __init__(self, tmp: Path, bootstrap: str, pg_url: str, partitions: int = 12) -> None:
        token = uuid.uuid4().hex[:8]
        self.dir = tmp
        self.token = token
        self.bootstrap = bootstrap
        self.prefix = f"fleet_{token}"
        self.group = f"fleet-{token}"
        self.pg_url = pg_url
        url = sa.make_url(pg_url)
        self.password = url.password or ""
        # What a tenant's configuration stores: the password as a reference.
        self.source_url = (
            url.set(password="PASSWORD")
            .render_as_string(hide_password=False)
            .replace("PASSWORD", "${" + PASSWORD_ENV + "}")
        )
        self.workers: list[WorkerProc] = []
        self.worker_config = self.dir / "worker.yaml"
        self.worker_config.write_text(
            yaml.safe_dump(
                {
                    "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": self.prefix},
                    "group": self.group,
                    "tenants_partitions": partitions,
                    "session_timeout_s": SESSION_TIMEOUT_S,
                    "heartbeat_interval_s": 1,
                    "stop_timeout_s": 15,
                    "restart": {"initial_backoff_s": 0.5, "max_backoff_s": 5},
                }
            )
        )
        self.cfg = WorkerConfig.model_validate(yaml.safe_load(self.worker_config.read_text()))
        tenants_topic.tenants_partitions(self.cfg, create=True)

    # -- tenants ----------------------------------------------------------------------------

    def tenant_name(self, i: int) -> str:
        return f"t{i:02d}-{self.token}"

    def spread_tenants(self) -> list[str]:
        """One tenant per partition of the tenants topic (names chosen by their hash), so the
        share of tenants that moves equals the share of partitions that moves."""
        n = self.cfg.tenants_partitions
        by_partition: dict[int, str] = {}
        i = 0
        while len(by_partition) < n:
            name = f"s{i:03d}-{self.token}"
            by_partition.setdefault(tenants_topic.partition_for(name, n), name)
            i += 1
        return [by_partition[p] for p in range(n)]

    def tenant_config(self, tenant: str, **entity: Any) -> dict[str, Any]:
        source = entity.pop("source", {})
        table = {"table": "customers"} if entity.pop("table", "customers") else {}
        return {
            "tenant": tenant,
            "source": {"url": self.source_url, "tenant_column": "tenant", **source},
            "kafka": {
                "bootstrap_servers": self.bootstrap,
                "topic_prefix": self.prefix,
                "topic_template": "{prefix}.{tenant}.{entity}",
                "topic_partitions": 1,
                "format": "single_object",
                "transaction_timeout_s": 30,
            },
            "entities": {
                "customers": {
                    **table,
                    "key": "id",
                    "fields": {
                        "local_id": "id",
                        "full_name": "full_name",
                        "updated_at": "updated_at",
                    },
                    "batching": {"mode": "id", "column": "id"},
                    "batch_size": 50,
                    "poll_interval_s": 0.5,
                    "settle_delay_s": 0,
                    **entity,
                }
            },
            "logging": {"format": "text", "level": "INFO"},
            "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 2, "startup_timeout_s": 30},
        }

    def put(self, config: Mapping[str, Any]) -> None:
        """In process (fast); the CLI test uses `poller tenants put`."""
        text = yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)
        tenants_topic.put(self.cfg, str(config["tenant"]), text)

    def topic(self, tenant: str) -> str:
        return f"{self.prefix}.{tenant}.customers"

    # -- workers ----------------------------------------------------------------------------

    def start_worker(self, label: str | None = None, protocol: str = "classic") -> WorkerProc:
        label = label or f"worker-{len(self.workers) + 1}"
        port = free_port()
        cfg = self.dir / f"{label}.yaml"
        data = yaml.safe_load(self.worker_config.read_text())
        data["metrics"] = {"host": "127.0.0.1", "port": port}
        data["protocol"] = protocol
        cfg.write_text(yaml.safe_dump(data))
        env = {**os.environ, PASSWORD_ENV: self.password}
        argv = poller_argv("worker", "--config", str(cfg))
        w = WorkerProc(argv, self.dir / f"{label}.log", label, port, env)
        self.workers.append(w)
        return w

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            poller_argv(*args, "--worker-config", str(self.worker_config)),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            check=False,
            env={**os.environ, PASSWORD_ENV: self.password},
        )

    def owners(self, workers: Sequence[WorkerProc] | None = None) -> dict[str, list[str]]:
        """tenant -> labels of the live workers running it (fenced in, watermarks loaded)."""
        out: dict[str, list[str]] = {}
        for w in workers if workers is not None else self.workers:
            if w.alive():
                for t in w.tenants_up():
                    out.setdefault(t, []).append(w.label)
        return out

    def wait_all_running(
        self, tenants: Sequence[str], timeout: float, workers: Sequence[WorkerProc] | None = None
    ) -> dict[str, str]:
        """Until every tenant runs on exactly one of `workers`; tenant -> worker label."""

        def check() -> dict[str, str] | None:
            owners = self.owners(workers)
            if all(len(owners.get(t, [])) == 1 for t in tenants):
                return {t: owners[t][0] for t in tenants}
            return None

        return wait_for(check, timeout, f"{len(tenants)} tenants running once", self.workers)

    # -- results ----------------------------------------------------------------------------

    def source_rows(self, tenant: str) -> dict[str, SourceRow]:
        engine = sa.create_engine(self.pg_url, poolclass=NullPool)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, full_name FROM customers WHERE tenant = :t"), {"t": tenant}
            ).all()
        engine.dispose()
        return {str(r[0]): SourceRow({"full_name": r[1]}) for r in rows}

    def stored_rows(self) -> dict[str, int]:
        """tenant -> rows_total of its committed watermark."""
        out: dict[str, int] = {}
        for rec in read_committed(self.bootstrap, f"{self.prefix}.watermarks"):
            if rec.value is None:
                continue
            key = json.loads(rec.key)
            if key[1] != "customers":
                continue
            with contextlib.suppress(Exception):  # other record kinds in the topic
                out[key[0]] = watermark.decode(rec.value).rows_total
        return out

    def wait_caught_up(self, tenants: Sequence[str], timeout: float) -> None:
        want = {t: len(self.source_rows(t)) for t in tenants}

        def done() -> bool:
            have = self.stored_rows()
            return all(have.get(t) == n for t, n in want.items())

        wait_for(
            done,
            timeout,
            f"every tenant's watermark to reach its rows {want}",
            self.workers,
            interval=1.0,
        )

    def published_ids(self, tenant: str) -> set[str]:
        records = read_committed(self.bootstrap, self.topic(tenant))
        return set(decode_topic(records, tenant, "customers").by_id)

    def aborted_messages(self, tenant: str) -> int:
        """Messages in the tenant's topic that no read_committed consumer sees (aborted)."""
        everything = read_committed(
            self.bootstrap, self.topic(tenant), isolation="read_uncommitted"
        )
        return len(everything) - len(read_committed(self.bootstrap, self.topic(tenant)))

    def verify_exactly_once(self, tenant: str) -> int:
        expected = self.source_rows(tenant)
        delivery = decode_topic(
            read_committed(self.bootstrap, self.topic(tenant)), tenant, "customers"
        )
        problems = compare(delivery, expected)
        assert not problems, (
            f"tenant {tenant}: {delivery.count} messages for {len(expected)} rows:\n  "
            + "\n  ".join(problems)
            + "\n"
            + "\n".join(w.describe(15) for w in self.workers)
        )
        return len(expected)

    def close(self) -> None:
        for w in self.workers:
            w.close()
        with contextlib.suppress(Exception):  # best effort: the test's topics
            admin = AdminClient({"bootstrap.servers": self.bootstrap})
            mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(self.prefix)]
            if mine:
                for future in admin.delete_topics(mine, operation_timeout=15).values():
                    future.result(timeout=15)
