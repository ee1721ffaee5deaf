"""A child process watched while it runs: peak RSS (VmHWM, read before it is reaped) and CPU
seconds, for the JVM of Connect and for the poller alike."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil

from bench.e2e import _vm_hwm_kb


class Watched:
    def __init__(self, argv: list[str], log: Path, cwd: Path | None = None) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=cwd)  # fmt: skip
        self.ps = psutil.Process(self.proc.pid)
        self.hwm_kb = 0
        self._cpu = 0.0

    def sample(self) -> bool:
        """Update peak RSS and CPU; False once the process has exited (then reaped here, its
        CPU taken from wait4's rusage so the last moments count too)."""
        if self.proc.returncode is not None:
            return False
        self.hwm_kb = max(self.hwm_kb, _vm_hwm_kb(self.proc.pid))  # before reaping
        try:
            t = self.ps.cpu_times()
            self._cpu = max(self._cpu, t.user + t.system + t.children_user + t.children_system)
        except psutil.Error:
            pass
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if not pid:
            return True
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._cpu = max(self._cpu, usage.ru_utime + usage.ru_stime)
        return False

    def cpu_s(self) -> float:
        self.sample()
        return self._cpu

    @property
    def peak_rss_mb(self) -> float:
        return self.hwm_kb / 1024

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> None:
        if self.proc.returncode is None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
