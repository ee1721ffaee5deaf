"""The poller end to end: `poller run --once` as a child process against the bench table, into
topics of a fresh prefix (so no watermark exists), with its peak RSS (VmHWM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.engine import make_url

from bench.dataset import FIELDS, TENANT, bench_url
from bench.peer.broker import topic_bytes
from bench.raw import delete_topics
from poller.config import AppConfig, parse_config
from poller.kafka import watermark
from poller.kafka.topics import wanted_topics

BOOTSTRAP = os.environ.get("POLLER_BENCH_KAFKA", "127.0.0.1:9092")
REGISTRY = os.environ.get("POLLER_BENCH_REGISTRY", "http://127.0.0.1:8081/apis/ccompat/v7")
REPO_ROOT = Path(__file__).resolve().parent.parent


def poller_config(
    database: str,
    table: str,
    batch_size: int = 10_000,
    prefix: str | None = None,
    fmt: str = "single_object",
    driver: str | None = None,
) -> dict[str, Any]:
    """The poller's YAML config (as a dict) for the bench table; a fresh topic prefix and
    transactional id unless `prefix` is given. Metrics HTTP is off (no port clashes). `fmt`
    confluent registers the schemas in the registry at REGISTRY (fresh subjects per prefix).
    MariaDB: a bare `mysql://` URL (the poller picks mysqlclient when installed, as a user's
    would), or `driver` (pymysql, mysqldb) named."""
    prefix = prefix or f"bench-{uuid.uuid4().hex[:10]}"
    url = make_url(bench_url(database))
    if database == "mariadb":
        url = url.set(drivername=f"mysql+{driver}" if driver else "mysql")
    registry = {"schema_registry": {"url": REGISTRY}} if fmt == "confluent" else {}
    return {
        "tenant": TENANT,
        "source": {"url": url.render_as_string(False), "tenant_column": "user_id",
                   "timezone": "UTC"},
        "kafka": {"bootstrap_servers": BOOTSTRAP, "topic_prefix": prefix,
                  "transactional_id_prefix": prefix, "format": fmt},
        **registry,
        "entities": {
            "customers": {
                "table": table,
                "fields": dict(FIELDS),
                "key": "customer_id",
                "batching": {"mode": "id", "column": "customer_id"},
                "batch_size": batch_size,
            }
        },
        "metrics": {"enabled": False},
        "logging": {"format": "json", "level": "INFO"},
    }  # fmt: skip


def app_config(raw: dict[str, Any]) -> AppConfig:
    return parse_config(raw, "bench config")


def topics_of(cfg: AppConfig) -> list[str]:
    """The topics a run of this config creates (deleted after each run: they are big)."""
    return list(wanted_topics(cfg))


@dataclass
class E2EResult:
    rows: int  # rows_total of the committed watermark
    wall_s: float  # process start to exit
    copy_s: float  # "resumes after" log line (connected, watermark read) to "stopped"
    peak_rss_mb: float  # the child's VmHWM
    cpu_s: float  # the child's user + system CPU time (all its threads)
    # the data topic's partitions on the broker (lz4-compressed batches), when measured
    topic_bytes: int | None = None

    @property
    def bytes_per_record(self) -> float | None:
        return None if self.topic_bytes is None or not self.rows else self.topic_bytes / self.rows

    @property
    def startup_s(self) -> float:
        return self.wall_s - self.copy_s


def _log_times(path: Path) -> tuple[float | None, float | None]:
    start = end = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or "time" not in rec:
            continue
        msg = str(rec.get("message", ""))
        t = datetime.fromisoformat(rec["time"]).timestamp()
        if " resumes after " in msg and start is None:
            start = t
        elif msg == "stopped":
            end = t
    return start, end


def _vm_hwm_kb(pid: int) -> int:
    """Peak RSS of a live process since its exec (Linux VmHWM). Not wait4's ru_maxrss: after
    a fork+exec that counts the parent's RSS at fork time, here the bench's own heap."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_poller(
    raw: dict[str, Any],
    timeout_s: float = 3600,
    wrapper: list[str] | None = None,
    env: dict[str, str] | None = None,
    measure_bytes: bool = False,
    tree: Path | None = None,
) -> E2EResult:
    """Run `poller run --once` on the config; raise with its log tail if it fails.

    `wrapper` prefixes the command (e.g. a profiler); peak RSS is then the wrapper's.
    `measure_bytes`: also the data topic's size on the broker (a JVM run, ~2 s, after the copy).
    `tree`: run another checkout of the poller (bench/baseline.py) from its own directory.
    """
    cfg = app_config(raw)
    with tempfile.TemporaryDirectory(prefix="poller-bench-") as tmp:
        conf = Path(tmp) / "poller.yaml"
        conf.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
        log = Path(tmp) / "poller.log"
        cmd = [*(wrapper or []), sys.executable, "-m", "poller", "run", "--config", str(conf),
               "--once"]  # fmt: skip
        try:
            with log.open("wb") as out:
                t0 = time.time()
                environ = {**os.environ, **(env or {})}
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                        cwd=tree or REPO_ROOT, env=environ)  # fmt: skip
                deadline = time.monotonic() + timeout_s
                hwm = 0
                while True:
                    hwm = max(hwm, _vm_hwm_kb(proc.pid))  # before reaping: /proc goes with it
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        proc.returncode = os.waitstatus_to_exitcode(status)
                        break
                    if time.monotonic() > deadline:
                        proc.kill()
                    time.sleep(0.02)
                wall = time.time() - t0
            text = log.read_text(encoding="utf-8", errors="replace")
            if proc.returncode != 0:
                tail = "\n".join(text.splitlines()[-15:])
                raise RuntimeError(f"poller exited {proc.returncode}:\n{tail}")
            start, end = _log_times(log)
            copy = (end - start) if start is not None and end is not None else wall
            stored = watermark.load(cfg.kafka, cfg.kafka.watermark_topic_name(cfg.tenant),
                                    cfg.tenant)  # fmt: skip
            wm = stored.get("customers")
            rows = wm.rows_total if wm is not None else 0
            size = None
            if measure_bytes:
                data_topic = cfg.kafka.topic_for("customers", cfg.tenant)
                size = topic_bytes(cfg.kafka.bootstrap_servers, data_topic)
        finally:
            delete_topics(cfg.kafka.bootstrap_servers, topics_of(cfg))
    cpu = usage.ru_utime + usage.ru_stime
    return E2EResult(rows, wall, copy, hwm / 1024, cpu, size)
