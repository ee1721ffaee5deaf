"""/healthz and /readyz follow the probes and the last batch."""

from __future__ import annotations

import json
import threading

import pytest

from tests.integration.ops.harness import (
    http_get,
)

pytestmark = pytest.mark.integration


def test_http_endpoints_follow_probes_and_last_batch() -> None:
    """The server alone: /readyz is the AND of the probes (a raising probe is a failed one)
    and of the last batch; /healthz does not care; /metrics serves the registry."""
    from poller.ops.http import serve
    from poller.ops.metrics import Health, Metrics

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
        assert json.loads(body)["checks"] == {
            "database": True, "kafka": True, "last_batch": True, "entities": True,
        }  # fmt: skip

        db_ok.clear()
        status, body, _ = http_get(f"{base}/readyz")
        assert status == 503
        assert json.loads(body) == {
            "ready": False,
            "checks": {"database": False, "kafka": True, "last_batch": True, "entities": True},
        }
        assert http_get(f"{base}/healthz")[0] == 200

        db_ok.set()
        health.last_batch_ok = False
        status, body, _ = http_get(f"{base}/readyz")
        assert status == 503 and json.loads(body)["checks"]["last_batch"] is False
        health.last_batch_ok = True
        assert http_get(f"{base}/readyz")[0] == 200

        health.stuck = {"customers": {"error": "SourceError: statement timeout", "failures": 2}}
        status, body, _ = http_get(f"{base}/readyz")
        answer = json.loads(body)
        assert status == 503 and answer["checks"]["entities"] is False, answer
        assert answer["stuck"] == health.stuck, answer
        health.stuck = {}
        assert http_get(f"{base}/readyz")[0] == 200
    finally:
        server.shutdown()
        server.server_close()
