"""`poller demo`: seed the sample CRM tables for two tenants, copy one tenant to Kafka with the
real run loop, then read every topic back (read_committed) and compare it with the source.

Each run uses fresh topics, so repeated runs each show a complete copy rather than resuming
from the previous run's watermarks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from poller.config import AppConfig, load_config
from poller.demo.sample_data import DEFAULT_TENANTS, create_and_seed, demo_config, url_secret
from poller.kafka.tail import MessageDecoder, read_topic
from poller.ops.logs import setup_logging
from poller.pipeline.runner import Poller
from poller.redaction import redact

DEMO_DIR = Path("demo-out")
SQLITE_FILE = DEMO_DIR / "demo.sqlite"
READ_TIMEOUT_S = 10.0


@dataclass
class EntityCheck:
    """One entity's source rows against the messages read back from its topic."""

    name: str
    source_keys: list[str]  # JSON text of each key of the demo tenant's rows
    other_rows: int  # rows of the other tenant in the same table
    messages: int = 0
    keys: Counter[str] = field(default_factory=Counter)  # demo tenant's keys seen in the topic
    foreign: int = 0  # messages keyed with any other tenant
    sample: dict[str, object] | None = None

    @property
    def ok(self) -> bool:
        return (
            self.foreign == 0
            and self.messages == len(self.source_keys)
            and self.keys == Counter(self.source_keys)
        )


def _other_tenant(tenant: str) -> str:
    return next(t for t in DEFAULT_TENANTS if t != tenant)


def _source_url(source: str | None) -> str:
    if source is not None:
        return source
    SQLITE_FILE.parent.mkdir(parents=True, exist_ok=True)
    SQLITE_FILE.unlink(missing_ok=True)
    # Absolute, so the written config also works when run from another directory.
    return f"sqlite:///{SQLITE_FILE.resolve()}"


def write_config(path: Path, config: dict[str, Any], tenants: tuple[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Written by `poller demo`: tenant {tenants[0]} of the sample CRM tables (the same\n"
        f"# tables also hold tenant {tenants[1]}, which this config must not copy).\n"
        "# Run it again with: poller run --once --config " + str(path) + "\n"
    )
    body = yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100)
    path.write_text(header + body, encoding="utf-8")


def _kafka_answers(bootstrap: str) -> bool:
    # The run loop retries an absent broker; a demo should say so at once instead.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=5).brokers)
    except KafkaException:
        return False


def _registry_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url.split(',')[0].rstrip('/')}/subjects", timeout=5):
            return True
    except OSError:
        return False


def _source_checks(engine: sa.Engine, cfg: AppConfig, other: str) -> dict[str, EntityCheck]:
    checks: dict[str, EntityCheck] = {}
    with engine.connect() as conn:
        for name, ent in cfg.enabled_entities().items():
            assert ent.table is not None  # the demo config maps tables only
            table = sa.table(ent.table, sa.column(ent.key_columns[0]), sa.column("user_id"))
            key = table.c[ent.key_columns[0]]
            keys = conn.execute(sa.select(key).where(table.c.user_id == cfg.tenant)).scalars()
            n_other = conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.user_id == other)
            ).scalar_one()
            checks[name] = EntityCheck(name, [str(k) for k in keys], int(n_other))
    return checks


def _richest(a: dict[str, object] | None, b: dict[str, object]) -> dict[str, object]:
    """The record with more non-null fields (ties: the smaller id), to show a telling sample."""
    if a is None:
        return b

    def score(r: dict[str, object]) -> tuple[int, str]:
        return (-sum(v is not None for v in r.values()), str(r.get("local_id")).zfill(20))

    return a if score(a) <= score(b) else b


def _read_back(cfg: AppConfig, check: EntityCheck) -> None:
    decoder = MessageDecoder(cfg.schema_registry)
    topic = cfg.kafka.topic_for(check.name, cfg.tenant)
    try:
        for msg in read_topic(cfg.kafka, topic, READ_TIMEOUT_S):
            check.messages += 1
            decoded = decoder.key(msg.key())
            # An Avro key record {tenant, local_id} (the demo's integer key as its text,
            # docs/keys.md), or the JSON key [tenant, key]: compared as text.
            parts = list(decoded.values() if isinstance(decoded, dict) else decoded or ())  # type: ignore[call-overload]
            tenant, key = parts[0], parts[1]
            if tenant != cfg.tenant:
                check.foreign += 1
                continue
            check.keys[str(key)] += 1
            _name, record = decoder.value(msg.value())
            check.sample = _richest(check.sample, record)
    finally:
        decoder.close()


def _print_table(checks: dict[str, EntityCheck], cfg: AppConfig, other: str) -> None:
    head = ("entity", "mode", f"{cfg.tenant} rows", "messages", f"{other} rows", f"{other} msgs",
            "result")  # fmt: skip
    rows = [head] + [
        (c.name, cfg.entities[c.name].batching.mode.value, str(len(c.source_keys)),
         str(c.messages), str(c.other_rows), str(c.foreign), "OK" if c.ok else "MISMATCH")
        for c in checks.values()
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        # names left-aligned, numbers right-aligned
        out = [v.ljust(w) if i in (0, 1, 6) else v.rjust(w)
               for i, (v, w) in enumerate(zip(cells, widths, strict=True))]  # fmt: skip
        return "  ".join(out).rstrip()

    print(line(head))
    print("-" * len(line(head)))
    for r in rows[1:]:
        print(line(r))


def _print_samples(checks: dict[str, EntityCheck]) -> None:
    for c in checks.values():
        if c.sample is None:
            continue
        print(f"\n{c.name}: one decoded record")
        print(json.dumps(c.sample, indent=2, ensure_ascii=False, default=str))


def run_demo(args: argparse.Namespace) -> int:
    tenant: str = args.tenant
    tenants = (tenant, _other_tenant(tenant))
    url = _source_url(args.source)
    safe_url = redact(make_url(url).render_as_string(hide_password=True))  # and ?password=
    prefix = f"demo-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
    where = SQLITE_FILE if args.source is None else safe_url
    action = "seeding" if args.seed_only else f"copying {tenant} to Kafka ({args.bootstrap})"
    print(f"poller demo: sample CRM data for {tenants[0]} and {tenants[1]} in {where}; {action}")

    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        t0 = time.perf_counter()
        counts = create_and_seed(engine, tenants)
        total = sum(n for (t, _table), n in counts.items() if t == tenant)
        print(f"seeded 8 tables: {sum(counts.values())} rows ({total} of {tenant}) "
              f"in {time.perf_counter() - t0:.1f}s")  # fmt: skip
        config_path = Path(args.config_out)
        raw = demo_config(url, tenant, args.bootstrap, prefix, args.registry or None)
        write_config(config_path, raw, tenants)
        print(f"wrote {config_path} (topic prefix {prefix})")
        if args.seed_only:
            if make_url(url).password is not None:
                print("the config reads the database password from $POLLER_DEMO_DB_PASSWORD")
            return 0

        # The written config names the password's variable; set it for this process only.
        os.environ.update(url_secret(url)[1])
        cfg = load_config(config_path)
        if not _kafka_answers(args.bootstrap):
            print(f"Kafka does not answer at {args.bootstrap}; start it with "
                  "`scripts/services up kafka` and run the demo again")  # fmt: skip
            return 1
        if args.registry and not _registry_answers(args.registry):
            print(f"the schema registry does not answer at {args.registry}; start it with "
                  "`scripts/services up registry` (or run with --registry '' for "
                  "single-object encoding)")  # fmt: skip
            return 1
        # Warnings (retries) only: the per-entity INFO lines would bury the summary.
        setup_logging("text", "WARNING", tenant)
        t0 = time.perf_counter()
        Poller(cfg).run(once=True)
        print(f"poller run --once finished in {time.perf_counter() - t0:.1f}s; "
              "reading the topics back (read_committed)\n")  # fmt: skip

        checks = _source_checks(engine, cfg, tenants[1])
    finally:
        engine.dispose()
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        for future in [pool.submit(_read_back, cfg, c) for c in checks.values()]:
            future.result()

    _print_table(checks, cfg, tenants[1])
    _print_samples(checks)
    failed = [c.name for c in checks.values() if not c.ok]
    if failed:
        print(f"\nMISMATCH in {', '.join(failed)}")
        return 1
    print(f"\nall {len(checks)} entities match; no {tenants[1]} row was published. "
          f"Try: poller tail --config {args.config_out} --entity customers --limit 3")  # fmt: skip
    return 0
