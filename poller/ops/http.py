"""/metrics, /healthz and /readyz on one small threaded HTTP server.

The readiness checks (a query on the tenant's database, a Kafka metadata request) run in a
background thread every `metrics.probe_interval_s`; /readyz answers from their last results, so
requests to it, however many, never reach the database. Optional TLS (mutual with
`client_ca_file`) and basic auth follow Prometheus' exporter web configuration; /healthz, which
says only that the process answers, stays open for the kubelet."""

from __future__ import annotations

import base64
import binascii
import errno
import hmac
import json
import logging
import ssl
import sys
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from poller.config import MetricsConfig
from poller.errors import ConfigError, StartupError
from poller.ops.metrics import Health, Metrics

log = logging.getLogger(__name__)


class CachedProbes:
    """Runs `probes` every `interval_s` in a daemon thread; `results()` is the last round."""

    def __init__(self, probes: Mapping[str, Callable[[], bool]], interval_s: float) -> None:
        self._probes = dict(probes)
        self._results: dict[str, bool] = {name: False for name in self._probes}
        self._stop = threading.Event()
        self.rounds = 0
        if self._probes:
            threading.Thread(target=self._loop, args=(interval_s,), daemon=True).start()

    def _loop(self, interval_s: float) -> None:
        while True:
            # a new dict each round: readers see one whole round, never a half-updated one
            self._results = {name: _safe(probe) for name, probe in self._probes.items()}
            self.rounds += 1
            if self._stop.wait(interval_s):
                return

    def results(self) -> dict[str, bool]:
        return dict(self._results)

    def stop(self) -> None:
        self._stop.set()


def serve(
    web: MetricsConfig,
    metrics: Metrics,
    health: Health,
    probes: dict[str, Callable[[], bool]] | None = None,
) -> ThreadingHTTPServer:
    """Start serving in a daemon thread. `probes` are the readiness checks (database, kafka)."""
    cached = CachedProbes(probes or {}, web.probe_interval_s)

    def readiness() -> tuple[bool, dict[str, object]]:
        results: dict[str, bool] = cached.results()
        results["last_batch"] = health.last_batch_ok
        stuck = health.stuck  # one read: the run loop replaces it, never mutates it
        results["entities"] = not stuck
        ok = all(results.values())
        answer: dict[str, object] = {"ready": ok, "checks": results}
        if stuck:
            answer["stuck"] = stuck  # which entity waits, on what, since when
        return ok, answer

    return serve_endpoints(web, lambda: generate_latest(metrics.registry), readiness)


def serve_endpoints(
    web: MetricsConfig,
    exposition: Callable[[], bytes],
    readiness: Callable[[], tuple[bool, Mapping[str, object]]],
) -> ThreadingHTTPServer:
    """The three endpoints of a poller or a worker: /metrics, /healthz (alive), /readyz."""
    expected = _credentials(web)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/healthz"):
                self._send(200, b"ok\n", "text/plain")
                return
            if expected is not None and not _authorized(
                self.headers.get("Authorization"), expected
            ):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="poller"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path.startswith("/metrics"):
                self._send(200, exposition(), CONTENT_TYPE_LATEST)
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

    tls = _tls_context(web) if web.tls is not None else None  # before the port is taken
    try:
        server = _Server((web.host, web.port), Handler)
    except OSError as exc:  # gaierror, EACCES, EADDRNOTAVAIL: the settings; EADDRINUSE: for now
        where = f"metrics: cannot listen on {web.host}:{web.port}: {exc.strerror or exc}"
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"{where} (taken by another process; restart when free)") from None
        raise ConfigError([f"{where}; set metrics.host and metrics.port"]) from None
    server.tls = tls
    threading.Thread(target=server.serve_forever, daemon=True, name="http").start()
    return server


class _Server(ThreadingHTTPServer):
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the request's own thread, bounded: a client that connects
        # and says nothing cannot hold up the accept loop.
        if self.tls is not None:
            request.settimeout(10)
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ssl.SSLError | OSError):
            log.debug("endpoint request from %s: %s", client_address, exc)
            return
        super().handle_error(request, client_address)


def _tls_context(web: MetricsConfig) -> ssl.SSLContext:
    tls = web.tls
    assert tls is not None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
        if tls.client_ca_file:
            ctx.load_verify_locations(tls.client_ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([f"metrics.tls: {exc}"]) from exc
    return ctx


def _credentials(web: MetricsConfig) -> bytes | None:
    auth = web.basic_auth
    if auth is None:
        return None
    return f"{auth.user}:{auth.password.get_secret_value()}".encode()


def _authorized(header: str | None, expected: bytes) -> bool:
    if not header or not header.startswith("Basic "):
        return False
    try:
        given = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, expected)  # no timing hint of how much matched


def _safe(probe: Callable[[], bool]) -> bool:
    try:
        return bool(probe())
    except Exception:
        return False
