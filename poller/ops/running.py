"""Is a poller of this tenant running now? Asked by `poller status` and `offsets reset`.

Two signs, neither needs the running process's help beyond what it already does:
- its metrics endpoint (`metrics.host:port`) answers as the poller of this transactional.id
  (`poller_instance_info`), the identity that fencing uses;
- its watermark records are fresh: a running poller rewrites each idle entity's record every
  `heartbeat_interval_s` and a busy one's at every batch, wherever it runs.
Kafka's admin API in confluent-kafka has no call to describe a transactional.id's producer,
so the transaction coordinator cannot be asked directly.
"""

from __future__ import annotations

import datetime as dt
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from poller.config import AppConfig

_ANY_HOST = {"", "0.0.0.0", "::", "[::]"}


@dataclass(frozen=True)
class Liveness:
    running: bool | None  # None: cannot tell
    evidence: list[str]

    def __str__(self) -> str:
        word = {True: "running", False: "not running", None: "maybe running"}[self.running]
        return f"{word} ({'; '.join(self.evidence)})" if self.evidence else word


def endpoint_url(cfg: AppConfig) -> str | None:
    if not cfg.metrics.enabled:
        return None
    host = "127.0.0.1" if cfg.metrics.host in _ANY_HOST else cfg.metrics.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{cfg.metrics.port}/metrics"


def probe_endpoint(cfg: AppConfig, timeout_s: float = 2.0) -> tuple[bool | None, str]:
    """(True, why) when the endpoint serves this tenant's series; (False, why) when nothing
    answers there or another tenant's poller does; (None, why) when there is no endpoint."""
    url = endpoint_url(cfg)
    if url is None:
        return None, "metrics endpoint disabled"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body = resp.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"nothing answers at {url} ({reason})"
    tid = cfg.transactional_id()
    ids: set[str] = set()
    try:
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == "poller_instance_info":
                    ids.add(sample.labels.get("transactional_id", ""))
    except ValueError:
        return False, f"{url} answers, but not with Prometheus metrics"
    if tid in ids:
        return True, f"{url} serves the poller of transactional.id {tid}"
    return False, f"{url} answers for {', '.join(sorted(ids)) or 'no poller'}, not {tid}"


def fresh_writes(
    cfg: AppConfig, written: Iterable[dt.datetime], now: dt.datetime | None = None
) -> tuple[bool | None, str]:
    """Whether the newest watermark write is recent enough for a running poller's
    heartbeats: within two heartbeat intervals (plus a minute's grace)."""
    intervals = [e.heartbeat_interval_s for e in cfg.enabled_entities().values()]
    if not intervals or min(intervals) <= 0:
        return None, "heartbeats disabled"
    newest = max(written, default=None)
    if newest is None:
        return False, "no watermark written yet"
    now = now or dt.datetime.now(dt.UTC)
    age = (now - newest).total_seconds()
    window = 2 * max(intervals) + 60
    fresh = age <= window
    return (
        fresh,
        f"last watermark write {age:.0f}s ago ({'within' if fresh else 'over'} {window:.0f}s)",
    )


def _stop_file(cfg: AppConfig) -> Path:
    base = os.environ.get("POLLER_STATE_DIR") or Path.home() / ".cache" / "poller"
    return Path(base) / f"{cfg.transactional_id()}.stopped"


def record_stop(cfg: AppConfig) -> None:
    """Note that this machine's `poller run` of the tenant has ended (a `--once` that caught
    up, a stop, a crash), so `status` can tell its fresh watermark writes from a live one's.
    Best effort: a read-only file system leaves status at "maybe"."""
    path = _stop_file(cfg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dt.datetime.now(dt.UTC).isoformat(), encoding="utf-8")
    except OSError:
        pass


def recorded_stop(cfg: AppConfig) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(_stop_file(cfg).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def poller_running(cfg: AppConfig, written: Iterable[dt.datetime]) -> Liveness:
    """Running when the endpoint serves this tenant. Fresh watermark writes without such an
    endpoint are "maybe" (a poller elsewhere, or one that just stopped) unless a run on this
    machine recorded its stop after the newest write; nothing of either is "not running"."""
    written = list(written)
    by_endpoint, why_endpoint = probe_endpoint(cfg)
    by_writes, why_writes = fresh_writes(cfg, written)
    evidence = [why_endpoint, why_writes]
    if by_endpoint:
        return Liveness(True, evidence)
    stopped = recorded_stop(cfg)
    newest = max(written, default=None)
    if by_writes and stopped is not None and newest is not None and stopped >= newest:
        evidence.append(f"the run on this machine ended at {stopped:%Y-%m-%dT%H:%M:%SZ}, after it")
        return Liveness(False, evidence)
    if by_writes or (by_endpoint is None and by_writes is None):
        return Liveness(None, evidence)
    return Liveness(False, evidence)
