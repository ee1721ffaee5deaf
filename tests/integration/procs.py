"""The integration tests' one process harness: a subprocess (`poller run`, `poller worker`,
Prometheus...) in a session of its own, stdout and stderr in one log file, with bounded waits
that fail the test with the log's tail."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import pytest

from tests.integration.conftest import REPO_ROOT


class LoggedProcess:
    """One subprocess, stdout and stderr in one log file (appended to: a restarted process of
    the same label keeps one log)."""

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        label: str,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = argv
        self.label = label
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
        self.ended: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        if self.proc.poll() is None:
            return True
        self._closed()
        return False

    def _closed(self) -> None:
        if self.ended is None:
            self.ended = time.monotonic()
        if not self._log.closed:
            self._log.close()

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, like a power cut of the process."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._closed()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """The exit code; fails the test (and kills the process) after `timeout` seconds."""
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"{self.label} did not exit within {timeout:.0f}s; killed.\n{self.describe()}"
            )
        self._closed()
        return rc

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code; fails the test (after killing it) past `timeout`."""
        self.terminate()
        return self.wait(timeout)

    def halt(self, timeout: float = 30.0) -> int:
        """SIGTERM, SIGKILL after `timeout`; never fails (for teardown)."""
        self.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._closed()
        return self.proc.returncode

    @property
    def elapsed(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def describe(self, lines: int = 40) -> str:
        state = "running" if self.proc.poll() is None else f"exit code {self.proc.returncode}"
        tail = "\n".join(self.log().splitlines()[-lines:])
        return (
            f"--- {self.label} (pid {self.pid}, {state}, {self.elapsed:.1f}s, "
            f"log {self.log_path}):\n{tail}\n---"
        )
