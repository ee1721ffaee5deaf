"""/metrics, /healthz and /readyz on one small threaded HTTP server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from poller.ops.metrics import Health, Metrics


def serve(
    host: str,
    port: int,
    metrics: Metrics,
    health: Health,
    probes: dict[str, Callable[[], bool]] | None = None,
) -> ThreadingHTTPServer:
    """Start serving in a daemon thread. `probes` are called by /readyz (e.g. database, kafka)."""
    checks = probes or {}

    def readiness() -> tuple[bool, dict[str, object]]:
        results = {name: _safe(probe) for name, probe in checks.items()}
        results["last_batch"] = health.last_batch_ok
        stuck = health.stuck  # one read: the run loop replaces it, never mutates it
        results["entities"] = not stuck
        ok = all(results.values())
        answer: dict[str, object] = {"ready": ok, "checks": results}
        if stuck:
            answer["stuck"] = stuck  # which entity waits, on what, since when
        return ok, answer

    return serve_endpoints(host, port, lambda: generate_latest(metrics.registry), readiness)


def serve_endpoints(
    host: str,
    port: int,
    exposition: Callable[[], bytes],
    readiness: Callable[[], tuple[bool, Mapping[str, object]]],
) -> ThreadingHTTPServer:
    """The three endpoints of a poller or a worker: /metrics, /healthz (alive), /readyz."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._send(200, exposition(), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                self._send(200, b"ok\n", "text/plain")
            elif self.path.startswith("/readyz"):
                ok, answer = readiness()
                self._send(200 if ok else 503, json.dumps(answer).encode(), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes every few seconds would drown the real log lines

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="http").start()
    return server


def _safe(probe: Callable[[], bool]) -> bool:
    try:
        return bool(probe())
    except Exception:
        return False
