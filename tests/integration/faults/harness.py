"""`poller run` processes and the per-test Scenario: unique tenant and topic prefix, config
files, logs, bounded waits."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from poller.config import KafkaConfig
from poller.errors import PollerError
from poller.kafka.backfill_state import load_all
from poller.kafka.watermark import Watermark, live_key, no_key
from tests.integration.conftest import REPO_ROOT
from tests.integration.faults.readback import (
    Delivery,
    Record,
    TopicEnds,
    compare,
    decode_topic,
    end_offsets,
    read_committed,
)
from tests.integration.faults.sources import (
    PostgresServer,
    SourceDB,
    SourceRow,
    bounded_connect_args,
    customers_entity,
)
from tests.integration.faults.waits import free_port, poller_argv, wait_for
from tests.integration.procs import LoggedProcess

# What the test modules use, from one place.
__all__ = [
    "SEED",
    "PollerProcess",
    "PostgresServer",
    "Scenario",
    "SourceDB",
    "SourceRow",
    "bounded_connect_args",
    "customers_entity",
    "end_offsets",
    "free_port",
    "metric",
    "read_committed",
    "scrape",
    "wait_for",
]

SEED = int(os.environ.get("POLLER_FAULT_SEED", "20240611"))


# One `poller ...` subprocess, stdout and stderr in one log file.
PollerProcess = LoggedProcess


# -------------------------------------------------------------------------------- scenario


class Scenario:
    """One test's tenant, topic prefix, config files and poller processes."""

    def __init__(self, tmp: Path, bootstrap: str, name: str) -> None:
        token = uuid.uuid4().hex[:10]
        self.dir = tmp
        self.bootstrap = bootstrap
        self.tenant = f"fault-{name}-{token}"
        self.prefix = f"fault_{token}"
        self.procs: list[PollerProcess] = []
        self.rng = random.Random(f"{SEED}:{name}")
        self._ends: TopicEnds | None = None

    # -- names -------------------------------------------------------------------------------

    def topic(self, entity: str) -> str:
        return f"{self.prefix}.{entity}"

    @property
    def watermark_topic(self) -> str:
        return f"{self.prefix}.watermarks"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.prefix}.dead_letter"

    # -- configuration --------------------------------------------------------------------------

    def config_dict(
        self,
        source_url: str,
        entities: Mapping[str, Mapping[str, Any]],
        *,
        bootstrap: str | None = None,
        retry: Mapping[str, Any] | None = None,
        metrics_port: int = 0,
        kafka: Mapping[str, Any] | None = None,
        source: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "source": {"url": source_url, "connect_timeout_s": 5, **(source or {})},
            "kafka": {
                "bootstrap_servers": bootstrap or self.bootstrap,
                "topic_prefix": self.prefix,
                "topic_partitions": 3,
                "transaction_timeout_s": 30,
                "format": "single_object",  # read back with the poller's own Decoder
                **(kafka or {}),
            },
            "entities": {k: dict(v) for k, v in entities.items()},
            "metrics": {"host": "127.0.0.1", "port": metrics_port},
            "logging": {"format": "text", "level": "INFO"},
            "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 2, **(retry or {})},
        }

    def write_config(self, config: Mapping[str, Any], name: str = "poller.yaml") -> Path:
        path = self.dir / name
        path.write_text(yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
        return path

    def config(
        self,
        source_url: str,
        entities: Mapping[str, Mapping[str, Any]],
        name: str = "poller.yaml",
        **kw: Any,
    ) -> Path:
        return self.write_config(self.config_dict(source_url, entities, **kw), name)

    # -- processes -------------------------------------------------------------------------------

    def start(self, config: Path, *, once: bool = False, label: str | None = None) -> PollerProcess:
        label = label or f"poller-{len(self.procs) + 1}"
        args = ["run", "--config", str(config)] + (["--once"] if once else [])
        proc = PollerProcess(poller_argv(*args), self.dir / f"{label}.log", label)
        self.procs.append(proc)
        return proc

    def run_once(self, config: Path, timeout: float, label: str | None = None) -> PollerProcess:
        """`poller run --once` to its end; fails unless it exits 0 within `timeout`."""
        proc = self.start(config, once=True, label=label)
        rc = proc.wait(timeout)
        assert rc == 0, f"`run --once` failed:\n{proc.describe()}"
        return proc

    def cli(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            poller_argv(*args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            check=False,
        )

    def offsets(self, config: Path) -> dict[str, dict[str, Any]]:
        """`poller offsets show --json`, by entity."""
        out = self.cli("offsets", "show", "--config", str(config), "--json")
        assert out.returncode == 0, f"offsets show failed ({out.returncode}):\n{out.stderr}"
        return {row["entity"]: row for row in json.loads(out.stdout)}

    def kafka_config(self) -> KafkaConfig:
        return KafkaConfig.model_validate(
            {"bootstrap_servers": self.bootstrap, "topic_prefix": self.prefix}
        )

    def stored(self, entity: str, after_kill: bool = False) -> Watermark | None:
        """The committed watermark, read in-process (cheap enough to poll). Right after a
        SIGKILL the killed poller's transaction may be open with a newer watermark that is
        never committed: `after_kill` reads to the last stable offset without waiting for it."""
        wait_for = no_key if after_kill else live_key
        try:
            stored = load_all(self.kafka_config(), self.watermark_topic, self.tenant, 10,
                              wait_for=wait_for)  # fmt: skip
        except PollerError:  # topic not there yet
            return None
        return stored.watermarks.get(entity)

    def wait_for_cursor(
        self, entity: str, cursor: object, timeout: float, watch: Sequence[PollerProcess] = ()
    ) -> Watermark:
        def reached() -> Watermark | None:
            wm = self.stored(entity)
            return wm if wm is not None and wm.position.cursor == cursor else None

        return wait_for(
            reached, timeout, f"{entity}'s watermark to reach {cursor!r}", interval=0.5, watch=watch
        )

    @property
    def ends(self) -> TopicEnds:
        if self._ends is None:
            self._ends = TopicEnds(self.bootstrap)
        return self._ends

    def watermark_high(self) -> int:
        """Committed offsets of the watermark topic so far (2 per committed batch)."""
        return self.ends.committed(self.watermark_topic)

    def wait_for_batches(
        self, batches: int, timeout: float, watch: Sequence[PollerProcess] = ()
    ) -> int:
        """Until `batches` more transactions hit the watermark topic (from now)."""
        start = self.watermark_high()
        goal = start + 2 * batches
        return wait_for(
            lambda: h if (h := self.watermark_high()) >= goal else None,
            timeout,
            f"{batches} more committed batch(es)",
            interval=0.05,
            watch=watch,
        )

    def kill_in_transaction(
        self,
        proc: PollerProcess,
        topic: str,
        timeout: float,
        ready: Callable[[], bool] = lambda: True,
    ) -> bool:
        """SIGKILL `proc` while a transaction of its own has rows on `topic` and is open; False
        when it ended first. A transaction has rows on the broker for milliseconds, and a probe
        that saw one and then killed raced the commit. So each look is taken with `proc` frozen
        (SIGSTOP stops librdkafka's threads too): nothing it sees can end meanwhile except an
        EndTxn sent just before the freeze, which a second look after a pause rules out. Rows
        written before the call (an earlier process's abandoned transaction, which `proc`
        aborts when it fences it) do not count: the high watermark must have grown."""
        before = self.ends.high(topic)
        deadline = time.monotonic() + timeout
        while proc.alive():
            if time.monotonic() > deadline:
                pytest.fail(f"no open transaction on {topic} in {timeout:.0f}s:\n{proc.describe()}")
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                if ready() and self.ends.high(topic) > before and self.ends.in_flight(topic):
                    time.sleep(0.5)
                    if self.ends.in_flight(topic):
                        proc.kill()
                        return True
            finally:
                if proc.alive():
                    os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.002)  # it runs on between two looks
        return False

    def records(self, entity: str) -> list[Record]:
        return read_committed(self.bootstrap, self.topic(entity))

    def delivery(self, entity: str) -> Delivery:
        return decode_topic(self.records(entity), self.tenant, entity)

    def verify_exactly_once(
        self, entity: str, expected: Mapping[str, SourceRow], delivery: Delivery | None = None
    ) -> Delivery:
        """The entity topic (or `delivery` already read from it) holds each expected row exactly
        once with the expected field values, and nothing else."""
        delivery = delivery or self.delivery(entity)
        problems = compare(delivery, expected)
        assert not problems, (
            f"{entity}: {delivery.count} messages for {len(expected)} source rows, not exactly "
            f"once (seed {SEED}):\n  " + "\n  ".join(problems) + "\n" + self.logs_tail()
        )
        return delivery

    def logs_tail(self, lines: int = 15) -> str:
        return "\n".join(p.describe(lines) for p in self.procs[-3:])

    def close(self) -> None:
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.kill()
        if self._ends is not None:
            self._ends.close()


def scrape(port: int, timeout: float = 5.0) -> dict[str, float]:
    """The poller's /metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                out[name] = float(value)
    return out


def metric(samples: Mapping[str, float], name: str, **labels: str) -> float | None:
    for key, value in samples.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            return value
    return None


# -------------------------------------------------------------------------- service control
