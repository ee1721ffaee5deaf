"""The `poller` command as a user runs it: check, run --once, offsets show/reset, tail."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from poller.config import load_config
from poller.kafka.tail import MessageDecoder, read_topic

pytestmark = pytest.mark.integration

POLLER = Path(sys.executable).with_name("poller")
ENTITIES = ("customers", "product_categories")


def cli(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(POLLER), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def demo(tmp_path: Path, kafka_bootstrap: str, registry_url: str) -> tuple[Path, dict[str, Any]]:
    """The demo's SQLite CRM and config (Confluent format), cut to two entities, with topics
    unique to the test."""
    seeded = cli(tmp_path, "demo", "--seed-only", "--config-out", "c.yaml", "--registry",
                 registry_url)  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    cfg = yaml.safe_load((tmp_path / "c.yaml").read_text())
    prefix = f"cli_{uuid.uuid4().hex[:10]}"
    cfg["kafka"].update(
        bootstrap_servers=kafka_bootstrap, topic_prefix=prefix, transactional_id_prefix=prefix
    )
    cfg["entities"] = {name: cfg["entities"][name] for name in ENTITIES}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return tmp_path, cfg


def offsets(cwd: Path) -> dict[str, dict[str, Any]]:
    out = cli(cwd, "offsets", "show", "--config", "c.yaml", "--json")
    assert out.returncode == 0, out.stderr
    return {row["entity"]: row for row in json.loads(out.stdout)}


def test_check_run_tail_offsets_and_reset(demo: tuple[Path, dict[str, Any]]) -> None:
    cwd, cfg = demo
    checked = cli(cwd, "check", "--config", "c.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok: 2 entities checked" in checked.stdout
    lines = checked.stdout.splitlines()
    for what in ("configuration", "topic names", "kafka", "database", "entity customers",
                 "entity product_categories", "schema registry"):  # fmt: skip
        assert any(line.startswith(f"ok: {what}") for line in lines), (what, checked.stdout)
    # SQLite has no transaction list: the horizon check warns (PostgreSQL: "ok: grants")
    assert any(line.startswith("warning: ") and "horizon" in line for line in lines), lines

    assert offsets(cwd)["customers"]["cursor"] is None  # nothing stored yet
    ran = cli(cwd, "run", "--once", "--config", "c.yaml")
    assert ran.returncode == 0, ran.stderr
    stored = offsets(cwd)
    assert stored["customers"]["rows_total"] == 300
    assert stored["customers"]["cursor"] == 300  # id mode: the largest acme-corp id
    assert stored["product_categories"]["rows_total"] == 20

    tailed = cli(cwd, "tail", "--config", "c.yaml", "--entity", "customers", "--limit", "3")
    assert tailed.returncode == 0, tailed.stderr
    records = [json.loads(line) for line in tailed.stdout.splitlines()]
    assert len(records) == 3
    for rec in records:
        # The Avro key record, decoded with the schema the registry holds for its id.
        # The canonical key record (docs/keys.md): the tenant and the row's local_id.
        assert rec["_key"] == {"tenant": "acme-corp", "local_id": rec["local_id"]}
        assert isinstance(rec["_partition"], int) and isinstance(rec["_offset"], int)
        assert rec["first_name"]

    reset = cli(cwd, "offsets", "reset", "--config", "c.yaml", "--entity", "customers",
                "--to", "250")  # fmt: skip
    assert reset.returncode == 0, reset.stderr
    assert offsets(cwd)["customers"]["cursor"] == 250
    again = cli(cwd, "run", "--once", "--config", "c.yaml")
    assert again.returncode == 0, again.stderr
    topic = f"{cfg['kafka']['topic_prefix']}.customers"
    keys = Counter(m.key() for m in read_topic(cfg["kafka"]["bootstrap_servers"], topic))
    decoder = MessageDecoder(load_config(cwd / "c.yaml").schema_registry)
    twice = sorted(int(decoder.key(k)["local_id"]) for k, n in keys.items() if n == 2)
    assert len(keys) == 300 and twice == list(range(251, 301)), twice


def test_check_lists_every_problem_and_run_writes_nothing(
    demo: tuple[Path, dict[str, Any]],
) -> None:
    cwd, cfg = demo
    ent = cfg["entities"]["customers"]
    ent["fields"]["email"] = "no_such_email"
    ent["fields"]["birth_date"] = "customer_id"  # an integer into a date field
    cfg["entities"]["product_categories"]["key"] = "no_such_key"
    (cwd / "c.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))

    checked = cli(cwd, "check", "--config", "c.yaml")
    assert checked.returncode == 8  # the mapping does not fit: as run
    problems = [line for line in checked.stdout.splitlines() if line.startswith("problem:")]
    assert len(problems) == 3, checked.stdout
    text = "\n".join(problems)
    assert (
        "'no_such_email'" in text and "(column 'customer_id')" in text and "'no_such_key'" in text
    )

    ran = cli(cwd, "run", "--once", "--config", "c.yaml")
    assert ran.returncode == 8, ran.stderr
    assert "nothing written" in ran.stderr
    assert offsets(cwd)["customers"]["cursor"] is None
