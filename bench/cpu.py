"""CPU accounting per component, so a shared, noisy machine can be read: the bench process and
its reaped children (the poller), PostgreSQL (postmaster plus its reaped backends), MariaDB,
the Kafka broker, and whatever else kept the cores busy ("other": other users' load)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

import psutil

COMPONENTS = ("client", "postgresql", "mariadb", "kafka", "other")


def _total(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def _listeners(ports: Mapping[str, int]) -> dict[str, psutil.Process]:
    """The process listening on each service's port (PostgreSQL: the postmaster, whose
    backends are its children)."""
    by_port = {
        c.laddr.port: c.pid
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid is not None and c.laddr
    }
    return {name: psutil.Process(by_port[port]) for name, port in ports.items() if port in by_port}


class CpuMeter:
    """`read()` before and after a measurement; `delta()` gives core-seconds per component.
    Services are looked up by listening port on every read: a restarted one (another
    session's fault test) shows as NaN instead of a wrong figure."""

    def __init__(self, ports: Mapping[str, int]) -> None:
        self.ports = dict(ports)

    def read(self) -> dict[str, float]:
        time.sleep(0.3)  # lets the postmaster reap a just-closed backend (its CPU counts then)
        t = os.times()
        out = {"client": t.user + t.system + t.children_user + t.children_system}
        for name, p in _listeners(self.ports).items():
            try:
                out[name] = _total(p)
                out[f"pid:{name}"] = p.pid
            except psutil.Error:
                continue
        c = psutil.cpu_times()
        out["machine"] = float(sum(c) - c.idle - c.iowait)
        return out

    @staticmethod
    def delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
        d: dict[str, float] = {}
        for k in ("client", *(n for n in COMPONENTS if n in after and n in before)):
            same = before.get(f"pid:{k}") == after.get(f"pid:{k}")
            d[k] = after[k] - before[k] if same else float("nan")
        tracked = sum(v for v in d.values() if v == v)  # NaN-safe
        d["other"] = max(0.0, after["machine"] - before["machine"] - tracked)
        return d


def per_million(d: Mapping[str, float], rows: int) -> dict[str, float]:
    return {k: v * 1e6 / rows for k, v in d.items()}
