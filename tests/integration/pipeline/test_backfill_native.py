"""A backfill on PostgreSQL reads its batches through the native path (COPY BINARY and the
extension) where the live reader would, and publishes exactly what the Python path
(POLLER_NATIVE=0) publishes for the same range: keys, values, headers, timestamps, order."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from poller.config import parse_config
from poller.source import native_pg
from tests.integration.pipeline.helpers import (
    OTHER,
    PEOPLE_DDL,
    TENANT,
    config,
    execute,
    people_entity,
    run_once,
    topics_deleted_after,
)
from tests.integration.pipeline.test_backfill import in_process, write_config
from tests.integration.pipeline.test_native_run import raw_messages
from tests.integration.source.native_harness import require_native

pytestmark = pytest.mark.integration

ROWS = 3_000


def copy_and_backfill(url: str, bootstrap: str, tmp: Path, mode: str, by: list[str],
                      bounds: tuple[str, str]) -> list[tuple[Any, ...]]:  # fmt: skip
    """A live copy, then a backfill of `bounds`: the data topic's committed messages."""
    prefix = f"bfn_{uuid.uuid4().hex[:10]}"
    with topics_deleted_after(bootstrap, prefix):
        entity = people_entity(mode, 400)
        if mode == "timestamp+id":
            entity["batching"]["id_column"] = "id"
        live = config(url, TENANT, bootstrap, prefix, {"customers": entity},
                      tenant_column="user_id")  # fmt: skip
        run_once(live)
        path = write_config(live, tmp / f"{prefix}.yaml")
        done = in_process(["poller", "backfill", "--config", str(path), "--entity", "customers",
                           *by, "--from", bounds[0], "--to", bounds[1]])  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "rows published again" in done.stdout, done.stdout
        return raw_messages(bootstrap, parse_config(live).kafka.topic_for("customers", TENANT))


@pytest.mark.parametrize(
    ("mode", "by", "bounds"),
    [("id", [], ("101", "2500")), ("id", ["--by", "key"], ("7", "2900")),
     ("timestamp+id", [], ("2024-03-31T00:30:00", "2024-03-31T02:30:00"))],
)  # fmt: skip
def test_a_backfill_publishes_the_same_on_both_paths(
    pg_url: str, kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    mode: str, by: list[str], bounds: tuple[str, str],
) -> None:  # fmt: skip
    require_native()
    execute(
        pg_url,
        *PEOPLE_DDL,
        "INSERT INTO people SELECT g, CASE WHEN mod(g, 10) = 0 THEN :other ELSE :tenant END, "
        "'Имя ✓ ' || g, CASE WHEN mod(g, 3) = 0 THEN NULL ELSE 'L' || g END, "
        "timestamp '2024-03-31 00:00' + g * interval '3 seconds' FROM generate_series(1, :rows) g",
        params={"tenant": TENANT, "other": OTHER, "rows": ROWS},
    )
    reads: list[bool] = []
    real = native_pg.NativeReader.read

    def counted(self: native_pg.NativeReader, *args: Any) -> Any:
        got = real(self, *args)
        if self._what.startswith("backfill"):
            reads.append(got is not None)
        return got

    monkeypatch.setattr(native_pg.NativeReader, "read", counted)
    native = copy_and_backfill(pg_url, kafka_bootstrap, tmp_path, mode, by, bounds)
    assert reads and all(reads), reads  # every backfill batch took the native path
    assert len(native) > ROWS * 9 // 10  # the live copy and the backfill's rows
    monkeypatch.setenv("POLLER_NATIVE", "0")
    python = copy_and_backfill(pg_url, kafka_bootstrap, tmp_path, mode, by, bounds)
    assert len(python) > ROWS * 9 // 10  # the live copy and the backfill's rows
    if mode == "id":  # no message time in id mode: the producer stamps its own clock
        native, python = [m[:4] for m in native], [m[:4] for m in python]
    assert native == python
