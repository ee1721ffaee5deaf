"""/healthz and /readyz follow the probes and the last batch."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from poller.config import MetricsConfig
from tests.integration.ops.harness import (
    http_get,
)

pytestmark = pytest.mark.integration


def _next_answer(base: str, old: int) -> tuple[int, bytes]:
    """/readyz once the background probes have seen the change (within a few rounds)."""
    deadline = time.monotonic() + 10
    while True:
        status, body, _ = http_get(f"{base}/readyz")
        if status != old or time.monotonic() > deadline:
            return status, body
        time.sleep(0.02)


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

    web = MetricsConfig(port=0, probe_interval_s=0.05)  # probes run in the background
    server = serve(web, metrics, health, {"database": database, "kafka": lambda: True})
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, body, ctype = http_get(f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=")
        assert b'poller_rows_read_total{entity="customers",tenant="acme"} 0.0' in body
        assert http_get(f"{base}/healthz")[:2] == (200, b"ok\n")
        assert http_get(f"{base}/nope")[0] == 404

        _next_answer(base, 503)  # not ready until the first round of probes has run
        status, body, ctype = http_get(f"{base}/readyz")
        assert (status, ctype) == (200, "application/json")
        assert json.loads(body)["checks"] == {
            "database": True, "kafka": True, "last_batch": True, "entities": True,
        }  # fmt: skip

        db_ok.clear()
        status, body = _next_answer(base, 200)
        assert status == 503
        assert json.loads(body) == {
            "ready": False,
            "checks": {"database": False, "kafka": True, "last_batch": True, "entities": True},
        }
        assert http_get(f"{base}/healthz")[0] == 200

        db_ok.set()
        assert _next_answer(base, 503)[0] == 200
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


def test_readyz_answers_from_cached_probes() -> None:
    """Issue 17 item 6: a flood of /readyz requests never reaches the database: the checks run
    in the background every probe_interval_s and /readyz answers from their last round."""
    from poller.ops.http import serve
    from poller.ops.metrics import Health, Metrics

    calls = []

    def database() -> bool:
        calls.append(time.monotonic())
        return True

    server = serve(
        MetricsConfig(port=0, probe_interval_s=30), Metrics(), Health(), {"database": database}
    )
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        _next_answer(base, 503)
        for _ in range(200):
            assert http_get(f"{base}/readyz")[0] == 200
        assert len(calls) == 1, len(calls)  # one round so far, whatever the requests
    finally:
        server.shutdown()
        server.server_close()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def test_endpoints_with_tls_and_basic_auth(tmp_path: Path) -> None:
    """Issue 17 item 6: HTTPS with the configured certificate, basic auth on /metrics and
    /readyz (a wrong or missing password gets 401), /healthz open for the kubelet."""
    from poller.ops.http import serve
    from poller.ops.metrics import Health, Metrics

    cert, key = _self_signed(tmp_path)
    web = MetricsConfig.model_validate(
        {
            "port": 0,
            "tls": {"cert_file": str(cert), "key_file": str(key)},
            "basic_auth": {"user": "prom", "password": "s3cret-scrape"},
        }
    )
    server = serve(web, Metrics(), Health())
    port = server.server_address[1]
    ctx = ssl.create_default_context(cafile=str(cert))

    def get(path: str, auth: str | None) -> int:
        req = urllib.request.Request(f"https://127.0.0.1:{port}{path}")
        if auth is not None:
            req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        idle = socket.create_connection(("127.0.0.1", port))  # connects, never says hello
        assert get("/metrics", "prom:s3cret-scrape") == 200  # not held up by the idle one
        idle.close()
        assert get("/metrics", "prom:wrong") == 401
        assert get("/metrics", None) == 401
        assert get("/readyz", None) == 401
        assert get("/healthz", None) == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # no plain HTTP here
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        server.shutdown()
        server.server_close()
