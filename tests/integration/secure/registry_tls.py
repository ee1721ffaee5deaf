"""The test's own schema registry over HTTPS (never the shared one on :8081): the stack's
Apicurio jar started by scripts/registry/start.sh on 8480 (HTTP) and 8481 (HTTPS, Quarkus's own
TLS), and scripts/registry/tls-front.sh on 8482 requiring a client certificate. Certificates
are made per session by openssl under a temporary directory: a CA, the server's (127.0.0.1),
a client's, and a second CA that signed nothing the registry serves (the "untrusted" one)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import REPO_ROOT
from tests.integration.procs import LoggedProcess

HTTP_PORT, HTTPS_PORT, MTLS_PORT = 8480, 8481, 8482
API = "/apis/ccompat/v7"
STACK_HOME = Path(os.environ.get("POLLER_STACK_HOME", Path.home() / ".cache/poller-stack"))
REGISTRY_TARGET = STACK_HOME / "registry-2.4.2.Final/build/target"
REGISTRY_JAR = REGISTRY_TARGET / "apicurio-runner-2.4.2.Final-runner.jar"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def make_pki(d: Path) -> Pki:
    d.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-subj", f"/CN=poller test {ca}", "-keyout", d / f"{ca}.key",
                 "-out", d / f"{ca}.pem")  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", d / "server.ext"]), ("client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=poller-{name}",
                 "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr")  # fmt: skip
        _openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem",
                 "-CAkey", d / "ca.key", "-CAcreateserial", "-days", "2",
                 "-out", d / f"{name}.pem", *ext)  # fmt: skip
    return Pki(d / "ca.pem", d / "server.pem", d / "server.key",
               d / "client.pem", d / "client.key", d / "other-ca.pem")  # fmt: skip


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@dataclass(frozen=True)
class TlsRegistry:
    pki: Pki
    https_url: str  # Quarkus's TLS, no client certificate asked
    mtls_url: str  # the TLS front: a client certificate signed by pki.ca required
    http_url: str  # the same registry in plain HTTP (for the tests' own checks)


def tls_registry_session(tmp: Path) -> Iterator[TlsRegistry]:
    if not REGISTRY_JAR.exists():
        pytest.fail(f"no registry jar at {REGISTRY_JAR}: run scripts/services up registry")
    for port in (HTTP_PORT, HTTPS_PORT, MTLS_PORT):
        if not _port_free(port):
            pytest.fail(f"port {port} is taken: a registry of an earlier run still up?")
    pki = make_pki(tmp / "pki")
    # Links to the jar and its lib/ (the jar's Class-Path is relative to it), so that
    # scripts/services, which finds its registry by the jar's path, never takes this one.
    (tmp / "lib").symlink_to(REGISTRY_TARGET / "lib")
    (tmp / "registry.jar").symlink_to(REGISTRY_JAR)
    registry = LoggedProcess(
        [str(REPO_ROOT / "scripts/registry/start.sh"), "--jar", str(tmp / "registry.jar"),
         "--port", str(HTTP_PORT), "--https-port", str(HTTPS_PORT),
         "--cert", str(pki.server_cert), "--key", str(pki.server_key)],
        tmp / "registry.log", "tls registry",
    )  # fmt: skip
    front = LoggedProcess(
        [str(REPO_ROOT / "scripts/registry/tls-front.sh"),
         "--listen", f"127.0.0.1:{MTLS_PORT}", "--to", f"127.0.0.1:{HTTP_PORT}",
         "--cert", str(pki.server_cert), "--key", str(pki.server_key),
         "--client-ca", str(pki.ca)],
        tmp / "front.log", "registry tls front",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{HTTP_PORT}/health/ready", timeout=5
                ):
                    break
            except OSError:
                if not registry.alive() or time.monotonic() > deadline:
                    pytest.fail(f"the test's registry did not start\n{registry.describe()}")
                time.sleep(1)
        if not front.alive():
            pytest.fail(f"the TLS front did not start\n{front.describe()}")
        yield TlsRegistry(
            pki,
            f"https://127.0.0.1:{HTTPS_PORT}{API}",
            f"https://127.0.0.1:{MTLS_PORT}{API}",
            f"http://127.0.0.1:{HTTP_PORT}{API}",
        )
    finally:
        front.halt()
        registry.halt()
