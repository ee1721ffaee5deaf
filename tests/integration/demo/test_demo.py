"""`poller demo` end to end against the local Kafka, for SQLite, PostgreSQL and MariaDB.

The demo checks itself, but these tests do not take its word: they count the source rows and
read every topic back on their own, compare keys and a few decoded values, and make sure no row
of the second tenant reached Kafka.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from poller.avro.registry import full_name
from poller.avro.schemas import ENTITIES, load_schema
from poller.config import AppConfig, load_config
from poller.demo.sample_data import ENTITY_TABLES, PASSWORD_ENV, url_secret
from poller.kafka.tail import MessageDecoder, read_topic
from tests.integration.conftest import REGISTRY_URL

pytestmark = pytest.mark.integration

TENANT, OTHER = "acme-corp", "globex"


def run_demo_cli(cwd: Path, bootstrap: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`poller demo` as a user runs it: a separate process, in its own working directory."""
    return subprocess.run(
        [sys.executable, "-m", "poller", "demo", "--config-out", str(cwd / "c.yaml"),
         "--bootstrap", bootstrap, "--registry", REGISTRY_URL, *extra],
        cwd=cwd, capture_output=True, text=True, timeout=180, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("POLLER_DEMO")},
    )  # fmt: skip


def source_rows(url: str, cfg: AppConfig) -> dict[str, tuple[Counter[str], int]]:
    """Per entity: the demo tenant's keys (as JSON text) and the other tenant's row count."""
    engine = sa.create_engine(url)
    out: dict[str, tuple[Counter[str], int]] = {}
    try:
        with engine.connect() as conn:
            for name, ent in cfg.entities.items():
                t = sa.table(ENTITY_TABLES[name], sa.column(ent.key), sa.column("user_id"))
                keys = conn.execute(sa.select(t.c[ent.key]).where(t.c.user_id == TENANT))
                other = conn.execute(
                    sa.select(sa.func.count()).select_from(t).where(t.c.user_id == OTHER)
                ).scalar_one()
                out[name] = (Counter(json.dumps(k) for k in keys.scalars()), other)
    finally:
        engine.dispose()
    return out


def totals(url: str) -> dict[str, Decimal]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT cheque_id, total_sum FROM cheques WHERE user_id = '{TENANT}'"  # noqa: S608
            ).all()
    finally:
        engine.dispose()
    return {str(k): Decimal(str(v)) for k, v in rows}  # str(): SQLite keeps decimals as text


def check_copy(url: str, cfg: AppConfig) -> None:
    """Every topic holds exactly the demo tenant's rows, once each, with exact values."""
    assert cfg.tenant == TENANT and set(cfg.entities) == set(ENTITIES)
    expected = source_rows(url, cfg)
    # The demo publishes in the Confluent format: Avro keys and values, ids from the registry.
    assert cfg.kafka.format == "confluent" and cfg.schema_registry is not None
    decoder = MessageDecoder(cfg.schema_registry)
    records: dict[str, list[dict[str, object]]] = {}
    for name in cfg.entities:
        topic = cfg.kafka.topic_for(name, cfg.tenant)
        keys: Counter[str] = Counter()
        records[name] = []
        for msg in read_topic(cfg.kafka.bootstrap_servers, topic, timeout_s=15):
            avro_key = decoder.key(msg.key())
            # The canonical key record (docs/keys.md): the demo's integer keys are local_id.
            assert isinstance(avro_key, dict) and set(avro_key) == {"tenant", "local_id"}, avro_key
            tenant, key = avro_key["tenant"], int(avro_key["local_id"])
            assert tenant == TENANT, f"{name}: a row of tenant {tenant!r} was published"
            keys[json.dumps(key)] += 1
            schema_name, record = decoder.value(msg.value())
            assert schema_name == full_name(load_schema(name).raw)
            records[name].append(record)
        source_keys, other_rows = expected[name]
        assert other_rows > 0, f"{name}: no {OTHER} rows, so isolation is not being tested"
        assert len(source_keys) > 0
        dupes = sorted(k for k, n in keys.items() if n > 1)[:5]
        missing, extra = source_keys - keys, keys - source_keys
        assert keys == source_keys, (
            f"{name}: {keys.total()} messages for {source_keys.total()} rows; duplicated "
            f"{dupes}, missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}"
        )

    for c in records["customers"]:
        parts = (c["first_name"], c["middle_name"], c["last_name"])
        assert c["full_name"] == " ".join(p for p in parts if p is not None)  # type: ignore[misc]
    assert any(c["middle_name"] is None for c in records["customers"])
    assert any("🎉" in str(e["payload"]) for e in records["events"])
    published = {str(r["local_id"]): r["total_amount"] for r in records["receipts"]}
    assert published == totals(url)


def check_output(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "MISMATCH" not in out and "Traceback" not in out + proc.stderr
    for name in ENTITIES:
        assert any(line.startswith(name) and line.rstrip().endswith("OK")
                   for line in out.splitlines()), f"{name} not reported OK:\n{out}"  # fmt: skip


def test_demo_sqlite(tmp_path: Path, kafka_bootstrap: str) -> None:
    proc = run_demo_cli(tmp_path, kafka_bootstrap)
    check_output(proc)
    assert (tmp_path / "demo-out" / "demo.sqlite").is_file()
    cfg = load_config(tmp_path / "c.yaml")
    check_copy(cfg.source.url, cfg)


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_demo_server_databases(
    backend: str, tmp_path: Path, kafka_bootstrap: str, request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    url: str = request.getfixturevalue("pg_url" if backend == "postgresql" else "mariadb_url")
    proc = run_demo_cli(tmp_path, kafka_bootstrap, "--source", url)
    check_output(proc)
    text = (tmp_path / "c.yaml").read_text(encoding="utf-8")
    safe_url, env = url_secret(url)
    # The fixtures' password is "poller", also a user name and a word of the header, so the
    # check is on the URL: it must carry the placeholder, and no other "user:password@".
    assert yaml.safe_load(text)["source"]["url"] == safe_url
    assert make_url(safe_url).password == f"${{{PASSWORD_ENV}}}" and set(env) == {PASSWORD_ENV}
    assert f":{make_url(url).password}@" not in text
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = load_config(tmp_path / "c.yaml")
    check_copy(url, cfg)
