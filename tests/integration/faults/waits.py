"""Bounded waits and small process helpers of the fault tests."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from tests.integration.procs import LoggedProcess

T = TypeVar("T")

POLLER_BIN = Path(sys.executable).with_name("poller")


def poller_argv(*args: str) -> list[str]:
    if not POLLER_BIN.exists():
        pytest.fail(f"{POLLER_BIN} not found: install the project (`make venv`)", pytrace=False)
    return [str(POLLER_BIN), *args]


def free_port() -> int:
    """A TCP port nothing listens on right now (also used as a 'closed port')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.2,
    watch: Sequence[LoggedProcess] = (),
) -> T:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds, or
    as soon as a watched poller process exits (with its log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for proc in watch:
            if not proc.alive():
                pytest.fail(f"while waiting for {what}: {proc.describe()}")
        if time.monotonic() > deadline:
            extra = "".join(f"\n{p.describe()}" for p in watch)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)
