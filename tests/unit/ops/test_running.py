"""`poller status` / `offsets reset`: is a poller of this tenant running now? Asked of a real
metrics endpoint (the poller's own HTTP server) and of the watermark write times."""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path
from typing import Any

import pytest

from poller.config import AppConfig, MetricsConfig, parse_config
from poller.ops.http import serve
from poller.ops.metrics import Health, Metrics
from poller.ops.running import fresh_writes, poller_running, probe_endpoint

NOW = dt.datetime(2026, 11, 30, 7, 0, tzinfo=dt.UTC)


def app(port: int, heartbeat: float = 60, prefix: str = "p") -> AppConfig:
    raw: dict[str, Any] = {
        "tenant": "acme",
        "source": {"url": "sqlite:///x.db"},
        "kafka": {"transactional_id_prefix": prefix, "format": "single_object"},
        "metrics": {"host": "0.0.0.0", "port": port},
        "entities": {
            "customers": {
                "table": "c", "key": "id", "fields": {"local_id": "id"},
                "batching": {"mode": "id", "column": "id"}, "heartbeat_interval_s": heartbeat,
            }
        },
    }  # fmt: skip
    return parse_config(raw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_the_endpoint_tells_this_poller_from_another_and_from_nothing() -> None:
    port = free_port()
    cfg = app(port)
    running, why = probe_endpoint(cfg)
    assert running is False and "nothing answers at http://127.0.0.1:" in why

    metrics = Metrics()
    metrics.instance.info({"tenant": "acme", "transactional_id": "other.acme"})
    server = serve(MetricsConfig(port=port), metrics, Health())
    try:
        running, why = probe_endpoint(cfg)
        assert running is False and "other.acme, not p.acme" in why
        assert probe_endpoint(app(port, prefix="other"))[0] is True
        live = poller_running(app(port, prefix="other"), [])
        assert live.running is True and str(live).startswith("running (")
    finally:
        server.shutdown()
        server.server_close()


def test_fresh_watermark_writes_say_maybe_and_old_ones_say_no() -> None:
    cfg = app(free_port(), heartbeat=60)
    assert fresh_writes(cfg, [NOW - dt.timedelta(seconds=100)], NOW)[0] is True
    assert fresh_writes(cfg, [NOW - dt.timedelta(seconds=190)], NOW)[0] is False
    assert fresh_writes(cfg, [], NOW) == (False, "no watermark written yet")
    assert fresh_writes(app(1, heartbeat=0), [NOW], NOW)[0] is None
    recent = poller_running(cfg, [dt.datetime.now(dt.UTC)])
    assert recent.running is None and str(recent).startswith("maybe running")
    stale = poller_running(cfg, [dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)])
    assert stale.running is False


def test_a_recorded_stop_after_the_newest_write_says_not_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run --once` finished on this machine: its fresh writes do not mean "maybe"."""
    from poller.ops.running import record_stop

    monkeypatch.setenv("POLLER_STATE_DIR", str(tmp_path))
    cfg = app(free_port(), heartbeat=60)
    written = [dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)]
    assert poller_running(cfg, written).running is None
    record_stop(cfg)
    stopped = poller_running(cfg, written)
    assert stopped.running is False and str(stopped).startswith("not running (")
    # a write after the recorded stop: another run (here or elsewhere) since
    later = [dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)]
    assert poller_running(cfg, later).running is None
