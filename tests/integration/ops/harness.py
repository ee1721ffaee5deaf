"""Helpers of the observability tests: a real `poller run` subprocess, a real Prometheus,
a source database with a writer thread, HTTP and log checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from confluent_kafka.admin import AdminClient
from sqlalchemy.pool import NullPool

from tests.integration.conftest import unique_name
from tests.integration.faults.waits import free_port
from tests.integration.procs import LoggedProcess

REPO_ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ENTITIES = ["customers", "events", "product_categories"]
RATE_INTERVAL = "1m"
BAD_LEVEL = 10_000_000_000  # does not fit product_categories.level (Avro int): dead-lettered


def http_get(url: str, timeout: float = 10.0) -> tuple[int, bytes, str]:
    """(status, body, content type); HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, diagnose: Callable[[], str]
) -> None:
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, ValueError, KeyError) as exc:  # not listening yet, partial data
            last_error = f"{type(exc).__name__}: {exc}"
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what} {last_error}\n{diagnose()}")


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path.name} missing)"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return f"--- last lines of {path.name}:\n" + "\n".join(text[-lines:])


class Proc(LoggedProcess):
    """A subprocess with its output in a file, always stopped at teardown."""

    def __init__(self, args: list[str], log: Path) -> None:
        super().__init__(args, log, log.stem, {**os.environ, "PYTHONUNBUFFERED": "1"})

    def stop(self, timeout: float = 30.0) -> int:
        return self.halt(timeout)  # teardown: never fails, always ends the process


@dataclass
class Prom:
    url: str

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        status, body, _ = http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", f"{expr}: {answer}"
        assert answer["data"]["resultType"] == "vector", expr
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def values(self, expr: str, at: float | None = None) -> list[float]:
        return [float(r["value"][1]) for r in self.query(expr, at)]

    def label_values(self, selector: str, label: str) -> set[str]:
        params = urllib.parse.urlencode({"match[]": selector})
        status, body, _ = http_get(f"{self.url}/api/v1/series?{params}")
        assert status == 200, body
        return {s[label] for s in json.loads(body)["data"] if label in s}


def start_prometheus(tmp_path: Path, procs: list[Proc], target: str) -> Prom:
    if not Path(PROMETHEUS).exists():
        pytest.fail("prometheus is not installed (scripts/services up installs it)")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(REPO_ROOT / "prometheus" / "alerts.yml")],
        "scrape_configs": [
            {"job_name": "poller", "static_configs": [{"targets": [target]}]},
        ],
    }
    cfg = tmp_path / "prom.yml"
    cfg.write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = Proc(
        [
            PROMETHEUS,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        tmp_path / "prometheus.log",
    )
    procs.append(proc)
    prom = Prom(f"http://127.0.0.1:{port}")
    wait_for(
        "Prometheus to be ready",
        lambda: http_get(f"{prom.url}/-/ready", timeout=2)[0] == 200,
        60,
        lambda: tail(proc.log_path),
    )
    return prom


@dataclass
class Source:
    admin_url: str  # superuser, database of the test
    poller_url: str  # the poller's own role, with a random password
    password: str
    database: str


class Writer(threading.Thread):
    """Keeps changing the source: new customers and events, and now and then a bad category
    row, so rates, batch durations and dead letters have fresh data. Pausable."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True, name="writer")
        self.engine = sa.create_engine(url, poolclass=NullPool)
        self.stopped = threading.Event()
        self.paused = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        n = 1000
        while not self.stopped.wait(0.3):
            if self.paused.is_set():
                continue
            n += 1
            try:
                with self.engine.begin() as c:
                    c.execute(
                        sa.text("INSERT INTO customers (id, name) VALUES (:n, :name)"),
                        {"n": n, "name": f"new {n}"},
                    )
                    c.execute(
                        sa.text(
                            "INSERT INTO events (id, customer_id, event_type) "
                            "VALUES (:n, 1, 'purchase')"
                        ),
                        {"n": n},
                    )
                    if n % 5 == 0:
                        c.execute(
                            sa.text(
                                "INSERT INTO product_categories (id, name, lvl) "
                                "VALUES (:n, 'bad', :bad)"
                            ),
                            {"n": n, "bad": BAD_LEVEL},
                        )
            except sa.exc.SQLAlchemyError as exc:
                if not self.paused.is_set():
                    self.errors.append(str(exc))

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)
        self.engine.dispose()


def poller_config(
    tmp_path: Path, url: str, kafka: str, tenant: str, port: int, **retry: Any
) -> tuple[Path, str]:
    prefix = unique_name("obs")
    cfg = {
        "tenant": tenant,
        "source": {"url": url, "connect_timeout_s": 3},
        "kafka": {
            "bootstrap_servers": kafka,
            "topic_prefix": prefix,
            "transactional_id_prefix": prefix,
            "topic_partitions": 1,
            "format": "single_object",
        },
        "metrics": {"host": "127.0.0.1", "port": port},
        "logging": {"format": "json", "level": "INFO"},
        "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 1, **retry},
        "entities": {
            "customers": {
                "table": "customers",
                "key": "id",
                "fields": {
                    "local_id": "id",
                    "full_name": "name",
                    "email": "email",
                    "updated_at": "updated_at",
                },
                "batching": {"mode": "timestamp", "column": "updated_at"},
                "batch_size": 50,
                "poll_interval_s": 1,
                "heartbeat_interval_s": 1,
                "settle_delay_s": 0,
            },
            "events": {
                "table": "events",
                "key": "id",
                "fields": {
                    "local_id": "id",
                    "customer_id": "customer_id",
                    "event_type": "event_type",
                    "occurred_at": "occurred_at",
                },
                "batching": {"mode": "id", "column": "id"},
                "batch_size": 100,
                "poll_interval_s": 1,
                "heartbeat_interval_s": 1,
            },
            "product_categories": {
                "table": "product_categories",
                "key": "id",
                "fields": {
                    "local_id": "id",
                    "name": "name",
                    "level": "lvl",
                    "updated_at": "updated_at",
                },
                "batching": {"mode": "timestamp", "column": "updated_at"},
                "poll_interval_s": 1,
                "heartbeat_interval_s": 1,
                "settle_delay_s": 0,
                "on_bad_row": "dead_letter",
            },
        },
    }
    path = tmp_path / "poller.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path, prefix


def delete_topics(bootstrap: str, prefix: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    with contextlib.suppress(Exception):  # best effort
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix + ".")]
        if names:
            for fut in admin.delete_topics(names, operation_timeout=15).values():
                fut.result(timeout=15)


def allow_connections(admin_url: str, database: str, allowed: bool) -> None:
    engine = sa.create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
        if not allowed:
            c.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            )
    engine.dispose()


def check_log_lines(log: Path, tenant: str, secret: str) -> list[dict[str, Any]]:
    """Every line is a JSON object with the tenant and an entity; the secret is nowhere."""
    text = log.read_text(encoding="utf-8", errors="replace")
    assert secret not in text, f"the database password leaked into the log:\n{tail(log)}"
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON log line: {line!r}\n{tail(log)}")
        assert record["tenant"] == tenant, line
        assert "entity" in record, line
        records.append(record)
    return records


def start_poller(
    tmp_path: Path, source: Source, kafka_bootstrap: str, procs: list[Proc], name: str
) -> tuple[str, int, str, str, Proc]:
    """`poller run` for a unique tenant, serving metrics on a free port: (tenant, port,
    topic prefix, base URL, process)."""
    tenant = unique_name(name)
    port = free_port()
    config, prefix = poller_config(tmp_path, source.poller_url, kafka_bootstrap, tenant, port)
    poller = Proc(
        [sys.executable, "-m", "poller", "run", "--config", str(config)],
        tmp_path / "poller.log",
    )
    procs.append(poller)
    return tenant, port, prefix, f"http://127.0.0.1:{port}", poller


def scrape(base: str) -> dict[tuple[str, str], float]:
    """(sample name, entity) -> value of the poller's own /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body, _ = http_get(f"{base}/metrics")
    assert status == 200
    return {
        (s.name, s.labels.get("entity", "")): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
