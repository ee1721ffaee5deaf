"""One tenant's child process: started from the worker's main thread (the parent-death signal
follows the thread that forked), stopped with SIGTERM and, after a deadline, SIGKILL."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from poller.errors import REASON_FILE_ENV
from poller.fleet.entry import PARENT_ENV
from poller.fleet.scoping import child_environment
from poller.source.limits import LIMITS_DIR_ENV

log = logging.getLogger(__name__)


def free_port() -> int:
    """A loopback port free right now, for a child's metrics server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Child:
    def __init__(
        self,
        tenant: str,
        config_path: Path,
        port: int,
        limits_dir: Path,
        allow_env: list[str] | None = None,
    ) -> None:
        self.tenant = tenant
        self.reason_path = config_path.with_suffix(".exit")  # the child's last error, if any
        self.reason_path.unlink(missing_ok=True)
        self.port = port
        self.started = time.monotonic()
        self.connected_at: float | None = None  # first seen with Kafka up (fenced the old)
        self.stopping_since: float | None = None
        own = {
            PARENT_ENV: str(os.getpid()),
            LIMITS_DIR_ENV: str(limits_dir),
            REASON_FILE_ENV: str(self.reason_path),
        }
        # With tenant_secrets (allow_env not None) the child does not inherit the worker's
        # credentials: only what it needs to run and the allowed variables.
        env = (
            {**os.environ, **own}
            if allow_env is None
            else child_environment(os.environ, allow_env, own)
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "poller.fleet.entry", "run", "--config", str(config_path)],
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # terminal signals reach the worker only; it stops them
        )
        log.info(
            "tenant %s: started (pid %d, metrics on 127.0.0.1:%d)",
            tenant,
            self.proc.pid,
            port,
            extra={"tenant": tenant},
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        return self.proc.poll()

    def reason(self) -> str | None:
        """What the child said when it stopped on an error (redacted), if it said anything."""
        try:
            text = self.reason_path.read_text(encoding="utf-8").strip()
        except OSError:
            return None
        return text or None

    def terminate(self) -> None:
        if self.stopping_since is None:
            self.stopping_since = time.monotonic()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def kill_if_overdue(self, deadline_s: float) -> None:
        since = self.stopping_since
        if since is not None and time.monotonic() - since > deadline_s and self.poll() is None:
            log.warning(
                "tenant %s: pid %d did not stop within %.0fs; SIGKILL",
                self.tenant,
                self.pid,
                deadline_s,
                extra={"tenant": self.tenant},
            )
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()


def stop_all(children: list[Child], deadline_s: float) -> None:
    """SIGTERM to all at once, wait until they exit, SIGKILL whoever outlives the deadline."""
    for c in children:
        c.terminate()
    end = time.monotonic() + deadline_s
    while any(c.poll() is None for c in children):
        if time.monotonic() > end:
            for c in children:
                c.kill_if_overdue(0)
            for c in children:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.proc.wait(timeout=10)
            return
        time.sleep(0.05)
