"""The poller on the peer's table: `poller run --once` (Confluent framing, like the peer's
converter) copies the table, then, after the catch-up rows are inserted, a second `--once`
with the same topics resumes from its watermark and copies just those."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench import e2e
from bench.peer import broker
from bench.peer.cluster import TABLE, LogicalPostgres
from bench.peer.figures import Phase, ToolRun
from bench.peer.watch import Watched
from poller.kafka import watermark


def config(pg: LogicalPostgres) -> dict[str, Any]:
    raw = e2e.poller_config("postgresql", TABLE, fmt="confluent")
    raw["source"]["url"] = pg.url
    return raw


def _once(raw: dict[str, Any], pg: LogicalPostgres, tmp: Path, n: int,
          timeout_s: float) -> tuple[Phase, float]:  # fmt: skip
    """One `poller run --once`: its phase figures and peak RSS (MB)."""
    conf = tmp / f"poller-{n}.yaml"
    conf.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    db0, t0 = pg.cpu_s(), time.time()
    w = Watched([sys.executable, "-m", "poller", "run", "--config", str(conf), "--once"],
                tmp / f"poller-{n}.log", cwd=e2e.REPO_ROOT)  # fmt: skip
    deadline = time.monotonic() + timeout_s
    try:
        while w.sample():
            if time.monotonic() > deadline:
                raise RuntimeError(f"poller still running after {timeout_s:.0f} s")
            time.sleep(0.05)
    finally:
        w.stop()
    wall = time.time() - t0
    if w.proc.returncode != 0:
        raise RuntimeError(f"poller exited {w.proc.returncode}:\n{w.tail(15)}")
    start, end = e2e._log_times(w.log)
    copy = (end - start) if start is not None and end is not None else wall
    cpu = {"poller": w.cpu_s(), "database": pg.cpu_s() - db0}
    return Phase(0, copy, wall, cpu), w.peak_rss_mb


def _rows_total(raw: dict[str, Any]) -> int:
    cfg = e2e.app_config(raw)
    stored = watermark.load(cfg.kafka, cfg.kafka.watermark_topic_name(cfg.tenant), cfg.tenant)
    wm = stored.get("customers")
    return wm.rows_total if wm is not None else 0


def run(pg: LogicalPostgres, rows: int, catch_up: int, timeout_s: float = 3600) -> ToolRun:
    raw = config(pg)
    cfg = e2e.app_config(raw)
    data_topic = cfg.kafka.topic_for("customers", cfg.tenant)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-peer-poller-") as tmp_name:
            tmp = Path(tmp_name)
            snap, rss1 = _once(raw, pg, tmp, 1, timeout_s)
            if (got := _rows_total(raw)) != rows:
                raise RuntimeError(f"poller published {got} rows, expected {rows}")
            pg.insert(rows + 1, catch_up)
            catch, rss2 = _once(raw, pg, tmp, 2, timeout_s)
            if (got := _rows_total(raw)) != rows + catch_up:
                raise RuntimeError(f"poller's total is {got} rows, expected {rows + catch_up}")
        snap.rows, catch.rows = rows, catch_up
        size = broker.topic_bytes(cfg.kafka.bootstrap_servers, data_topic)
    finally:
        broker.delete(cfg.kafka.bootstrap_servers, e2e.topics_of(cfg))
    return ToolRun("poller", snap, catch, max(rss1, rss2), size)
