"""A tenant on the secured broker: its own SCRAM user, SQLite source, per-tenant topic prefix
and configuration, with exactly the ACLs `poller acl --json` prints for it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from tests.integration.secure.broker import BOOTSTRAP, CA, Acl, SecureKafka

POLLER = [sys.executable, "-m", "poller"]
REPO_ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Tenant:
    name: str
    user: str
    password: str
    prefix: str
    dir: Path
    config: Path

    @property
    def principal(self) -> str:
        return f"User:{self.user}"

    @property
    def topic(self) -> str:
        return f"{self.prefix}.customers"

    @property
    def watermark_topic(self) -> str:
        return f"{self.prefix}.watermarks"

    @property
    def transactional_id(self) -> str:
        return f"poller.{self.name}"

    def poller(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """`poller ARGS` as this tenant, bounded by `timeout` (never a retry loop)."""
        return subprocess.run(
            [*POLLER, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO_ROOT,
            check=False,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )

    def acls(self, *features: str) -> list[Acl]:
        argv = ["acl", "--config", str(self.config), "--json"]
        for f in features:
            argv += ["--feature", f]
        out = self.poller(*argv, timeout=60)
        assert out.returncode == 0, out.stderr
        return [Acl.from_json(row, row["principal"]) for row in json.loads(out.stdout)]

    def add_rows(self, first: int, count: int) -> None:
        eng = sa.create_engine(f"sqlite:///{self.dir / 'source.sqlite'}")
        with eng.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO people (id, f_name, l_name) VALUES (:i, :f, :l)"),
                [{"i": i, "f": f"first{i}", "l": f"last{i}"} for i in range(first, first + count)],
            )
        eng.dispose()


def make_tenant(sk: SecureKafka, tmp: Path, label: str, **kafka: Any) -> Tenant:
    token = uuid.uuid4().hex[:8]
    name = f"{label}{token}"
    user, password = sk.user(f"t-{label}")
    home = tmp / name
    home.mkdir()
    (home / "kafka.password").write_text(password, encoding="utf-8")
    eng = sa.create_engine(f"sqlite:///{home / 'source.sqlite'}")
    with eng.begin() as conn:
        conn.execute(sa.text(
            "CREATE TABLE people (id INTEGER PRIMARY KEY NOT NULL, f_name TEXT, l_name TEXT)"
        ))  # fmt: skip
    eng.dispose()
    prefix = f"iso_{token}.{name}"
    sk.topic_prefixes.append(f"iso_{token}.")
    cfg = {
        "tenant": name,
        "source": {"url": f"sqlite:///{home / 'source.sqlite'}", "horizon": "settle"},
        "kafka": {
            "bootstrap_servers": BOOTSTRAP,
            "format": "single_object",
            "topic_prefix": f"iso_{token}",
            "layout": "per_tenant",
            "topic_partitions": 1,
            "transaction_timeout_s": 30,
            "options": {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": user,
                "sasl.password": f"${{file:{home / 'kafka.password'}}}",
                "ssl.ca.location": str(CA),
                **kafka,
            },
        },
        "entities": {
            "customers": {
                "table": "people",
                "key": "id",
                "fields": {"local_id": "id", "first_name": "f_name", "last_name": "l_name"},
                "batching": {"mode": "id", "column": "id"},
                "settle_delay_s": 0,
                "heartbeat_interval_s": 0,
            }
        },
        "metrics": {"enabled": False},
        "retry": {"startup_timeout_s": 5, "initial_backoff_s": 0.2, "max_backoff_s": 1},
    }
    path = home / "poller.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return Tenant(name, user, password, prefix, home, path)
