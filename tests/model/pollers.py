"""The poller under test, as the schedule drives it: one pass of the real run loop in process
(`Poller._connect` + `Poller._turn`, what `poller run` does each poll), a `poller run --once`
process for the final drain, and a `poller run` process SIGKILLed in the middle of its work."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from poller.config import parse_config
from poller.pipeline.once import OnceGoal
from poller.pipeline.runner import Poller
from tests.integration.faults.readback import TopicEnds

POLLER_BIN = Path(sys.executable).with_name("poller")
REPO_ROOT = Path(__file__).resolve().parents[2]
SETTLE_S = 0.25  # above MariaDB's innodb_trx cache age (0.1 s): see docs/model-test.md
MAX_DRAIN_TURNS = 2000
DRAIN_MAX_WAIT_S = 30.0  # --max-wait of the drain: every writer has ended by then

BATCHING = {
    "id": {"mode": "id", "column": "id"},
    "timestamp": {"mode": "timestamp", "column": "updated_at"},
    "timestamp+id": {"mode": "timestamp+id", "column": "updated_at", "id_column": "id"},
}


def config_dict(url: str, tenant: str, mode: str, bootstrap: str, prefix: str) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "source": {
            "url": url,
            "tenant_column": "tenant",
            "horizon": "transactions",
            "connect_timeout_s": 5,
        },
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topic_prefix": prefix,
            "transactional_id_prefix": prefix,
            "format": "single_object",
            "topic_partitions": 3,
            "transaction_timeout_s": 30,
        },
        "entities": {
            "customers": {
                "table": "items",
                "key": "id",
                "fields": {"local_id": "id", "full_name": "full_name", "updated_at": "updated_at"},
                "batching": BATCHING[mode],
                "batch_size": 3,  # batch boundaries everywhere, inside runs of equal stamps
                "poll_interval_s": 0.1,
                "heartbeat_interval_s": 0,
                "settle_delay_s": SETTLE_S,
            }
        },
        "metrics": {"enabled": False},
        "logging": {"level": "INFO"},  # the processes' logs; in process the test sets WARNING
        "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 1, "startup_timeout_s": 30},
    }


class PollerHost:
    """One tenant's poller across the schedules of a run: kept between passes like a running
    poller, replaced on `restart` and after a kill (a new producer fences the old one)."""

    def __init__(self, cfg: dict[str, Any], workdir: Path) -> None:
        self.cfg_dict = cfg
        self.cfg = parse_config(cfg)
        self.path = workdir / "poller.yaml"
        self.path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        self.workdir = workdir
        self.poller: Poller | None = None
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="poller-pass")
        self.pending: cf.Future[None] | None = None
        self.topic = self.cfg.kafka.topic_for("customers", self.cfg.tenant)
        self.watermarks = self.cfg.kafka.watermark_topic_name(self.cfg.tenant)
        self.kills = 0
        logging.getLogger("poller").setLevel(logging.WARNING)

    def _ensure(self) -> Poller:
        if self.poller is None:
            self.poller = Poller(self.cfg)
        self.poller._connect()
        return self.poller

    def _pass(self) -> None:
        p = self._ensure()
        for s in p.streams.values():
            s.next_poll_at = 0.0  # every entity polls now (the loop would sleep until due)
        p._turn()

    def start_pass(self) -> cf.Future[None]:
        return self._pool.submit(self._pass)

    def drain(self) -> int:
        """What `run --once` does after every writer ended, on the running poller: turns until
        every entity is caught up and its read bound has passed the drain's start (the product's
        own --once goal: a bound held back by a transaction it still sees is not caught up).
        Returns the number of turns."""

        def run() -> int:
            p = self._ensure()
            for reader in p.readers.values():
                reader._full = False  # a new --once would not reuse a bound from before
            p.once_goal = OnceGoal(p.tenant, max_wait_s=DRAIN_MAX_WAIT_S)
            try:
                for n in range(1, MAX_DRAIN_TURNS + 1):
                    for s in p.streams.values():
                        s.next_poll_at = 0.0
                    p._turn()
                    if all(s.caught_up for s in p.streams.values()):
                        if p.once_goal.done(p.streams):  # raises after DRAIN_MAX_WAIT_S
                            return n
                        time.sleep(0.05)
                raise AssertionError(f"not caught up after {MAX_DRAIN_TURNS} turns")
            finally:
                p.once_goal = None

        return self._pool.submit(run).result(timeout=600)

    def close(self) -> None:
        if self.poller is not None:
            with contextlib.suppress(Exception):  # a fenced producer may refuse to close nicely
                self.poller.close()
            self.poller = None

    # -- processes ------------------------------------------------------------------------------

    def _spawn(self, *args: str, label: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.workdir / f"{label}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(POLLER_BIN), "run", "--config", str(self.path), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        return proc, log

    def run_once_process(self) -> tuple[int, str]:
        """`poller run --once` as a process (the CLI a cron job runs): exit code and log."""
        self.close()
        proc, log = self._spawn("--once", label="once")
        try:
            rc = proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait(timeout=30)
        return rc, log.read_text(encoding="utf-8", errors="replace")[-4000:]

    def kill_mid_run(self, after_batches: int, ends: TopicEnds) -> str:
        """Start `poller run`, let it commit `after_batches` transactions (or open one), then
        SIGKILL it. Returns what it was doing when killed."""
        self.close()
        self.kills += 1
        start = ends.committed(self.watermarks)
        proc, log = self._spawn(label=f"killed-{self.kills}")
        started = time.monotonic()
        ready: float | None = None  # when it had resumed from the stored watermark
        what = "idle"
        try:
            while time.monotonic() - started < 60:
                if proc.poll() is not None:
                    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
                    raise AssertionError(f"`poller run` exited {proc.returncode}:\n{tail}")
                done = (ends.committed(self.watermarks) - start) // 2
                if done >= after_batches and ends.in_flight(self.topic):
                    what = f"a transaction open after {done} committed batch(es)"
                    break
                if ready is None and b"resumes after" in log.read_bytes():
                    ready = time.monotonic()
                if done >= after_batches + 3 or (ready and time.monotonic() - ready > 0.4):
                    what = f"{done} committed batch(es), no transaction seen open"
                    break
                time.sleep(0.003)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        return what

    def shutdown(self) -> None:
        self.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
