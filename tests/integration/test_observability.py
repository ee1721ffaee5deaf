"""Observability end to end: a real `poller run` subprocess scraped by a real Prometheus.

Every Grafana panel query (variables substituted as Grafana does) returns data, the alert
rules load and evaluate, /readyz follows the database going away and coming back, the logs
are JSON lines with tenant and entity, and the database password never reaches them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from confluent_kafka.admin import AdminClient
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.integration.conftest import unique_name
from tests.unit.test_dashboards import load_dashboard, metric_names, panel_queries, substitute

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ENTITIES = ["customers", "events", "product_categories"]
RATE_INTERVAL = "1m"
BAD_LEVEL = 10_000_000_000  # does not fit product_categories.level (Avro int): dead-lettered


# ------------------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


class Proc:
    """A subprocess with its output in a file, always stopped at teardown."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def stop(self, timeout: float = 30.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._fh.close()
        return self.popen.returncode


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop(timeout=15)


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
        lambda: tail(proc.log),
    )
    return prom


# ------------------------------------------------------------------------- the source


@dataclass
class Source:
    admin_url: str  # superuser, database of the test
    poller_url: str  # the poller's own role, with a random password
    password: str
    database: str


@pytest.fixture
def source(pg_url: str, pg_admin_url: str) -> Iterator[Source]:
    """A fresh database with three entities' tables, some rows (one of them bad), and a login
    role with a random password for the poller."""
    database = make_url(pg_url).database
    assert database
    role = unique_name("obs")
    password = "pw-" + secrets.token_hex(12)
    engine = sa.create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(sa.text(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'"))
        c.execute(
            sa.text("""
            CREATE TABLE customers (
                id bigint PRIMARY KEY, name text, email text,
                updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'))""")
        )
        c.execute(
            sa.text("""
            CREATE TABLE events (
                id bigint PRIMARY KEY, customer_id bigint, event_type text NOT NULL,
                occurred_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'))""")
        )
        c.execute(
            sa.text("""
            CREATE TABLE product_categories (
                id bigint PRIMARY KEY, name text NOT NULL, lvl bigint,
                updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'))""")
        )
        c.execute(
            sa.text("""
            INSERT INTO customers (id, name, email, updated_at)
            SELECT g, 'customer ' || g, 'c' || g || '@example.com',
                   now() AT TIME ZONE 'utc' - interval '2 hours' + g * interval '1 second'
            FROM generate_series(1, 200) g""")
        )
        c.execute(
            sa.text("""
            INSERT INTO events (id, customer_id, event_type)
            SELECT g, g % 200 + 1, 'login' FROM generate_series(1, 300) g""")
        )
        c.execute(
            sa.text("""
            INSERT INTO product_categories (id, name, lvl, updated_at)
            SELECT g, 'category ' || g, CASE WHEN g = 3 THEN :bad ELSE g % 4 END,
                   now() AT TIME ZONE 'utc' - interval '1 hour'
            FROM generate_series(1, 10) g"""),
            {"bad": BAD_LEVEL},
        )
        c.execute(sa.text(f'GRANT CONNECT ON DATABASE "{database}" TO {role}'))
        c.execute(sa.text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
    engine.dispose()
    poller_url = (
        make_url(pg_url).set(username=role, password=password).render_as_string(hide_password=False)
    )
    try:
        yield Source(pg_url, poller_url, password, database)
    finally:
        admin = sa.create_engine(pg_admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
        admin.dispose()
        engine = sa.create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :role"
                ),
                {"role": role},
            )
            c.execute(sa.text(f"DROP OWNED BY {role}"))
            c.execute(sa.text(f"DROP ROLE {role}"))
        engine.dispose()


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


# -------------------------------------------------------------------------------- tests


def start_poller(
    tmp_path: Path, source: Source, kafka_bootstrap: str, procs: list[Proc], name: str
) -> tuple[str, int, str, str, Proc]:
    """`poller run` for a unique tenant, serving metrics on a free port: (tenant, port,
    topic prefix, base URL, process)."""
    tenant = unique_name(name)
    port = free_port()
    config, prefix = poller_config(tmp_path, source.poller_url, kafka_bootstrap, tenant, port)
    poller = Proc(
        [sys.executable, "-m", "poller.cli", "run", "--config", str(config)],
        tmp_path / "poller.log",
    )
    procs.append(poller)
    return tenant, port, prefix, f"http://127.0.0.1:{port}", poller


def test_dashboard_alerts_and_readiness(
    tmp_path: Path,
    source: Source,
    pg_admin_url: str,
    kafka_bootstrap: str,
    procs: list[Proc],
) -> None:
    tenant, port, prefix, base, poller = start_poller(
        tmp_path, source, kafka_bootstrap, procs, "obs-tenant"
    )
    prom = start_prometheus(tmp_path, procs, f"127.0.0.1:{port}")
    writer = Writer(source.admin_url)
    writer.start()

    def diagnose() -> str:
        state = "running" if poller.popen.poll() is None else f"exited {poller.popen.returncode}"
        return f"poller {state}\n{tail(poller.log)}\n{tail(tmp_path / 'prometheus.log', 10)}"

    t = f'tenant="{tenant}"'
    try:
        # /healthz and /metrics answer as soon as the process is up.
        wait_for("/healthz", lambda: http_get(f"{base}/healthz", 2)[0] == 200, 60, diagnose)
        status, body, ctype = http_get(f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain"), ctype
        assert b"poller_build_info{" in body

        # Data flows and is scraped: rows of every entity, dead letters, librdkafka stats.
        def flowing() -> bool:
            published = {
                r["metric"]["entity"] for r in prom.query(f"poller_rows_published_total{{{t}}} > 0")
            }
            return (
                published == set(ENTITIES)
                and bool(prom.query(f"poller_rows_dead_lettered_total{{{t}}} > 0"))
                and bool(prom.query(f"poller_producer_delivery_latency_seconds{{{t}}}"))
                and bool(prom.query(f"poller_watermark_lag_seconds{{{t}}}"))
            )

        wait_for("rows, dead letters and producer statistics in Prometheus", flowing, 120, diagnose)
        wait_for("/readyz 200", lambda: http_get(f"{base}/readyz")[0] == 200, 30, diagnose)

        # The dashboard's variables resolve to this tenant and its entities.
        assert tenant in prom.label_values("poller_rows_read_total", "tenant")
        entity_values = prom.label_values(f'poller_rows_read_total{{tenant=~"{tenant}"}}', "entity")
        assert entity_values == set(ENTITIES)

        # The database goes away: /readyz says so, errors are counted.
        writer.paused.set()
        allow_connections(pg_admin_url, source.database, allowed=False)
        try:
            wait_for("/readyz 503", lambda: http_get(f"{base}/readyz")[0] == 503, 60, diagnose)
            status, body, _ = http_get(f"{base}/readyz")
            answer = json.loads(body)
            assert status == 503 and answer["ready"] is False, answer
            assert answer["checks"]["database"] is False, answer
            assert answer["checks"]["kafka"] is True, answer
            wait_for(
                "database errors and poller_database_up 0 in Prometheus",
                lambda: bool(
                    prom.query(f'poller_errors_total{{{t}, kind="SourceError"}} > 0')
                    and prom.query(f"poller_retries_total{{{t}}} > 0")
                    and prom.query(f"poller_database_up{{{t}}} == 0")
                ),
                60,
                diagnose,
            )
        finally:
            allow_connections(pg_admin_url, source.database, allowed=True)
            writer.paused.clear()

        # ... and comes back.
        wait_for("/readyz 200 again", lambda: http_get(f"{base}/readyz")[0] == 200, 60, diagnose)
        answer = json.loads(http_get(f"{base}/readyz")[1])
        assert answer == {
            "ready": True,
            "checks": {"database": True, "kafka": True, "last_batch": True},
        }
        wait_for(
            "poller_database_up 1 again",
            lambda: bool(prom.query(f"poller_database_up{{{t}}} == 1")),
            30,
            diagnose,
        )
        at = time.time() + 3  # one minute back from here covers before, during and after
        wait_for(
            "rows published after the outage",
            lambda: (
                time.time() > at + 2
                and bool(prom.query(f"increase(poller_rows_published_total{{{t}}}[3s]) > 0", at))
            ),
            60,
            diagnose,
        )

        # Every panel query returns data for this tenant, with real numbers in it.
        queries = panel_queries(load_dashboard())
        assert len(queries) >= 15
        for title, ref, expr in queries:
            promql = substitute(expr, tenant, ENTITIES, RATE_INTERVAL)
            result = prom.query(promql, at)
            assert result, f"panel {title!r} query {ref} returned nothing: {promql}"
            values = [float(r["value"][1]) for r in result]
            assert any(math.isfinite(v) for v in values), f"{title!r} {ref}: {result}"
            for r in result:
                assert r["metric"].get("tenant", tenant) == tenant, (title, r)
            if metric_names(expr) & {
                "poller_rows_published_total",
                "poller_rows_read_total",
                "poller_batches_total",
                "poller_errors_total",
                "poller_retries_total",
                "poller_rows_dead_lettered_total",
                "poller_transactions_total",
                "poller_watermark_value",
                "poller_database_up",
                "poller_kafka_up",
            }:
                assert max(values) > 0, f"panel {title!r} query {ref} has only zeros: {result}"

        # Specific real values behind the panels.
        by_kind = {
            r["metric"]["kind"]: float(r["value"][1])
            for r in prom.query(
                f"sum by (kind) (increase(poller_errors_total{{{t}}}[{RATE_INTERVAL}]))", at
            )
        }
        assert by_kind.get("SourceError", 0) > 0, by_kind
        outcomes = {
            r["metric"]["outcome"] for r in prom.query(f"poller_transactions_total{{{t}}} > 0", at)
        }
        assert "committed" in outcomes
        lag = prom.values(f'poller_watermark_lag_seconds{{{t}, entity="customers"}}', at)
        assert lag and 0 <= lag[0] < 600, lag
        since = prom.values(f"time() - max(poller_last_success_timestamp_seconds{{{t}}})", at)
        assert since and 0 <= since[0] < 30, since
        dead = prom.values(f"poller_rows_dead_lettered_total{{{t}}}", at)
        assert sum(dead) >= 2, dead
        quantiles = prom.values(
            substitute(
                "histogram_quantile(0.99, sum by (le, phase) "
                '(rate(poller_batch_phase_seconds_bucket{tenant=~"$tenant"}[1m])))',
                tenant,
                ENTITIES,
                RATE_INTERVAL,
            ),
            at,
        )
        assert len([q for q in quantiles if math.isfinite(q) and q > 0]) == 3, quantiles

        # The alert rules load and evaluate against the real series without errors.
        status, body, _ = http_get(f"{prom.url}/api/v1/rules")
        rules = [r for g in json.loads(body)["data"]["groups"] for r in g["rules"]]
        assert {r["name"] for r in rules} == {
            "PollerDown",
            "PollerStalled",
            "LagHigh",
            "ErrorRateHigh",
            "DeadLettersGrowing",
        }
        for r in rules:
            assert r["health"] == "ok", r
        assert writer.errors == [], writer.errors[:3]
    finally:
        writer.stop()
        code = poller.stop()
        delete_topics(kafka_bootstrap, prefix)
    assert code == 0, diagnose()
    records = check_log_lines(poller.log, tenant, source.password)
    assert any(r["entity"] == "customers" for r in records)
    assert any("***@" in r["message"] for r in records), "the source URL was never logged"


@pytest.mark.parametrize("failure", ["wrong_password", "unreachable"])
def test_password_never_logged_when_the_database_fails(
    tmp_path: Path, source: Source, kafka_bootstrap: str, procs: list[Proc], failure: str
) -> None:
    """A failing database: the poller retries, gives up, and logs why - never the password."""
    tenant = unique_name("obs-fail")
    secret = "S3cr3t-" + secrets.token_hex(8)
    url = make_url(source.poller_url).set(password=secret)
    if failure == "unreachable":
        url = url.set(port=free_port())
    config, prefix = poller_config(
        tmp_path,
        url.render_as_string(hide_password=False),
        kafka_bootstrap,
        tenant,
        free_port(),
        max_attempts=2,
        startup_timeout_s=3,
    )
    proc = Proc(
        [sys.executable, "-m", "poller.cli", "run", "--config", str(config)],
        tmp_path / "poller.log",
    )
    procs.append(proc)
    try:
        code = proc.popen.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the poller did not give up after 2 retries\n{tail(proc.log)}")
    finally:
        proc.stop()
        delete_topics(kafka_bootstrap, prefix)
    text = proc.log.read_text(encoding="utf-8", errors="replace")
    assert code not in (0, None), text
    assert secret not in text, f"the password leaked:\n{text}"
    # The last line is the CLI's own error message; every log line before it is JSON.
    *log_lines, last = [line for line in text.splitlines() if line.strip()]
    assert last.startswith("poller: error: "), last
    log_file = tmp_path / "log-lines.jsonl"
    log_file.write_text("\n".join(log_lines), encoding="utf-8")
    records = check_log_lines(log_file, tenant, secret)
    assert any("***@" in r["message"] for r in records), "the source URL was never logged"
    assert any(r["level"] == "WARNING" and "retry" in r["message"] for r in records), text


def test_http_endpoints_follow_probes_and_last_batch() -> None:
    """The server alone: /readyz is the AND of the probes (a raising probe is a failed one)
    and of the last batch; /healthz does not care; /metrics serves the registry."""
    from poller.http import serve
    from poller.metrics import Health, Metrics

    metrics, health = Metrics(), Health()
    metrics.init_labels("acme", ["customers"])
    db_ok = threading.Event()
    db_ok.set()

    def database() -> bool:
        if not db_ok.is_set():
            raise ConnectionError("postgresql://u:secret@h/db is gone")
        return True

    server = serve("127.0.0.1", 0, metrics, health, {"database": database, "kafka": lambda: True})
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, body, ctype = http_get(f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=")
        assert b'poller_rows_read_total{entity="customers",tenant="acme"} 0.0' in body
        assert http_get(f"{base}/healthz")[:2] == (200, b"ok\n")
        assert http_get(f"{base}/nope")[0] == 404

        status, body, ctype = http_get(f"{base}/readyz")
        assert (status, ctype) == (200, "application/json")
        assert json.loads(body)["checks"] == {"database": True, "kafka": True, "last_batch": True}

        db_ok.clear()
        status, body, _ = http_get(f"{base}/readyz")
        assert status == 503
        assert json.loads(body) == {
            "ready": False,
            "checks": {"database": False, "kafka": True, "last_batch": True},
        }
        assert http_get(f"{base}/healthz")[0] == 200

        db_ok.set()
        health.last_batch_ok = False
        status, body, _ = http_get(f"{base}/readyz")
        assert status == 503 and json.loads(body)["checks"]["last_batch"] is False
        health.last_batch_ok = True
        assert http_get(f"{base}/readyz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()


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


def test_counters_match_the_source(
    tmp_path: Path, source: Source, kafka_bootstrap: str, procs: list[Proc]
) -> None:
    """Once caught up, every source row was counted once (published or dead-lettered), and
    idle polls count nothing."""
    _tenant, _port, prefix, base, poller = start_poller(
        tmp_path, source, kafka_bootstrap, procs, "obs-count"
    )
    engine = sa.create_engine(source.admin_url, poolclass=NullPool)
    with engine.connect() as c:
        rows = {
            e: c.execute(sa.select(sa.func.count()).select_from(sa.table(e))).scalar_one()
            for e in ENTITIES
        }
    engine.dispose()
    try:
        wait_for(
            "every entity to be caught up",
            lambda: all(
                scrape(base).get(("poller_rows_published_total", e), 0)
                + scrape(base).get(("poller_rows_dead_lettered_total", e), 0)
                >= rows[e]
                for e in ENTITIES
            ),
            90,
            lambda: tail(poller.log),
        )
        time.sleep(3)  # three more polls of every entity (poll_interval_s 1)
        m = scrape(base)
    finally:
        poller.stop()
        delete_topics(kafka_bootstrap, prefix)
    counted = {
        e: m[("poller_rows_published_total", e)] + m[("poller_rows_dead_lettered_total", e)]
        for e in ENTITIES
    }
    read = {e: m[("poller_rows_read_total", e)] for e in ENTITIES}
    assert m[("poller_rows_dead_lettered_total", "product_categories")] == 1
    assert counted == rows, f"published + dead-lettered {counted} != source rows {rows}"
    assert read == rows, f"rows read {read} != source rows {rows}"
