"""`poller backfill` against the real services: a range published again without moving the
live watermark, resumed exactly once after SIGKILL, and interleaved by a running poller."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import io
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from poller.cli.main import main
from poller.config import parse_config
from poller.kafka.backfill_state import BackfillState, load_all
from poller.kafka.watermark import every_key, live_key
from tests.integration.pipeline.helpers import (
    OTHER,
    PEOPLE_DDL,
    POLLER_BIN,
    TENANT,
    config,
    db_url,
    engine,
    execute,
    people_entity,
    read_entity,
    read_topics,
    run_once,
    stored_watermarks,
    wait_until,
)

pytestmark = pytest.mark.integration


def write_config(cfg: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def insert_people(url: str, rows: list[dict[str, Any]]) -> None:
    eng = engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO people VALUES (:id, :tenant, :name, NULL, :at)"), rows
            )
    finally:
        eng.dispose()


def backfill_cmd(config_path: Path, *args: str) -> list[str]:
    return [str(POLLER_BIN), "backfill", "--config", str(config_path), *args]


def in_process(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """A command that returns before it would run a backfill (--queue, refusals), in this
    process: a `poller` process takes seconds to start on a busy machine."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv[1:])
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def backfill_state(
    cfg: dict[str, Any], entity: str, *, after_kill: bool = False
) -> BackfillState | None:
    """The stored backfill state. Right after a SIGKILL the killed backfill's transaction may
    still be open with a newer state in it, which is never committed: `after_kill` reads the
    committed state without waiting for it (the read would time out), as `run` and `status`
    do; otherwise every record of the tenant is waited for."""
    app = parse_config(cfg)
    stored = load_all(
        app.kafka,
        app.kafka.watermark_topic_name(TENANT),
        TENANT,
        timeout_s=15,
        wait_for=live_key if after_kill else every_key,
    )
    return stored.backfills.get(entity)


def test_sigkill_mid_backfill_resumes_exactly_once(
    pg_url: str, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    rows = 40_000
    execute(
        pg_url,
        *PEOPLE_DDL,
        "INSERT INTO people SELECT g, CASE WHEN g % 10 = 0 THEN :other ELSE :tenant END, "
        "'F' || g, 'L' || g, timestamp '2024-01-01' + g * interval '1 second' "
        "FROM generate_series(1, :rows) g",
        params={"tenant": TENANT, "other": OTHER, "rows": rows},
    )
    mine = [i for i in range(1, rows + 1) if i % 10]
    live = config(pg_url, TENANT, kafka_bootstrap, prefix,
                  {"customers": people_entity("id", 10_000)}, tenant_column="user_id")  # fmt: skip
    run_once(live)
    # The backfill runs in small transactions, so the kill lands between two of them or
    # inside one.
    small = copy.deepcopy(live)
    small["entities"]["customers"]["batch_size"] = 300
    # Paced, so that however fast the machine, the kill at 1,500 rows comes long before the
    # 27,000th: the range takes at least 5.4 s.
    small["source"]["max_rows_per_second"] = 5_000
    path = write_config(small, tmp_path / "backfill.yaml")
    low, high = 1_001, 31_000
    wanted = {i for i in mine if low <= i <= high}

    log = (tmp_path / "killed.log").open("wb")
    proc = subprocess.Popen(
        backfill_cmd(path, "--entity", "customers", "--from", str(low), "--to", str(high)),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        state = wait_until(
            lambda: (s := backfill_state(small, "customers")) is not None and s.rows >= 1_500 and s,
            90,
            "the backfill to commit some batches",
            interval=0.02,
        )
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()
    killed_at = backfill_state(small, "customers", after_kill=True)
    assert killed_at is not None and not killed_at.done, (
        f"the backfill finished before the kill ({state}); nothing was tested"
    )

    resumed = subprocess.run(
        backfill_cmd(path, "--entity", "customers", "--from", str(low), "--to", str(high)),
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resuming the backfill of customers by cursor from {low} to {high}" in resumed.stdout
    assert f"done: {len(wanted):,} rows published again" in resumed.stdout

    topic = f"{prefix}.customers"
    messages = read_topics(kafka_bootstrap, [topic], timeout_s=120)[topic]
    assert {m.tenant for m in messages} == {TENANT}
    counts = Counter(m.key for m in messages)
    twice = {k for k, n in counts.items() if n == 2}
    other = Counter(n for k, n in counts.items() if k not in wanted)
    assert twice == wanted, (
        f"{len(wanted - twice)} range keys not published again exactly once "
        f"(e.g. {sorted(wanted - twice)[:5]}); {killed_at.rows} rows committed at the kill"
    )
    assert other == Counter({1: len(mine) - len(wanted)})

    final = backfill_state(small, "customers")
    assert final is not None and final.done and final.rows == len(wanted)
    wm = stored_watermarks(kafka_bootstrap, prefix, TENANT)["customers"]
    assert (wm.position.cursor, wm.rows_total) == (rows - 1, len(mine))  # the live watermark


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_poller_interleaves_a_queued_backfill_with_live_batches(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    prefix: str,
    kafka_bootstrap: str,
) -> None:
    url = db_url(backend, request, tmp_path)
    base = dt.datetime(2024, 3, 1, 8, 0, 0)
    execute(url, *PEOPLE_DDL)

    def person(i: int) -> dict[str, Any]:
        name = "skip" if i % 7 == 0 else f"F{i}"
        return {"id": i, "tenant": TENANT, "name": name, "at": base + dt.timedelta(seconds=i)}

    insert_people(url, [person(i) for i in range(1, 1_201)])
    entities = {"customers": people_entity("timestamp", 100)}
    cfg = config(url, TENANT, kafka_bootstrap, prefix, entities, tenant_column="user_id")
    run_once(cfg)

    path = write_config(cfg, tmp_path / "c.yaml")
    low, high = base + dt.timedelta(seconds=201), base + dt.timedelta(seconds=700)
    bounds = ["--from", low.isoformat(), "--to", high.isoformat()]
    queued = in_process(
        backfill_cmd(
            path, "--entity", "customers", *bounds, "--where", "f_name <> 'skip'", "--queue"
        )
    )
    assert queued.returncode == 0, queued.stdout + queued.stderr
    assert "queued the backfill of customers" in queued.stdout
    pending = backfill_state(cfg, "customers")
    assert pending is not None and not pending.done and pending.rows == 0

    insert_people(url, [person(i) for i in range(1_201, 1_251)])  # live rows meanwhile
    run_once(cfg)  # returns once the live rows are in and the backfill is done

    wanted = {i for i in range(201, 701) if i % 7}
    counts = Counter(m.key for m in read_entity(kafka_bootstrap, f"{prefix}.customers"))
    assert {k for k, n in counts.items() if n == 2} == wanted
    assert set(counts) == set(range(1, 1_251)) and max(counts.values()) == 2
    done = backfill_state(cfg, "customers")
    assert done is not None and done.done and done.rows == len(wanted)
    wm = stored_watermarks(kafka_bootstrap, prefix, TENANT)["customers"]
    assert (wm.position.key, wm.rows_total) == (1_250, 1_250)


def test_a_different_pending_backfill_is_refused_then_replaced_by_key(
    pg_url: str, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    execute(pg_url, *PEOPLE_DDL)
    at = dt.datetime(2024, 1, 1)
    insert_people(pg_url, [{"id": i, "tenant": OTHER if i == 5 else TENANT, "name": f"F{i}",
                            "at": at} for i in range(1, 11)])  # fmt: skip
    cfg = config(pg_url, TENANT, kafka_bootstrap, prefix,
                 {"customers": people_entity("id", 100)}, tenant_column="user_id")  # fmt: skip
    path = write_config(cfg, tmp_path / "c.yaml")
    first = in_process(backfill_cmd(path, "--entity", "customers", "--from", "1",
                                    "--to", "10", "--queue"))  # fmt: skip
    assert first.returncode == 0, first.stderr
    other = in_process(backfill_cmd(path, "--entity", "customers", "--from", "5",
                                    "--to", "50"))  # fmt: skip
    assert other.returncode == 2
    assert "a backfill is pending (customers by cursor from 1 to 10, 0 rows done)" in other.stderr
    bad = in_process(backfill_cmd(path, "--entity", "customers", "--from", "x",
                                  "--to", "50"))  # fmt: skip
    assert bad.returncode == 2 and "'x' is not an integer id" in bad.stderr

    by_key = subprocess.run(backfill_cmd(path, "--entity", "customers", "--by", "key",
                                         "--from", "3", "--to", "7", "--replace"),
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert by_key.returncode == 0, by_key.stdout + by_key.stderr
    assert "done: 4 rows published again" in by_key.stdout
    published = Counter(m.key for m in read_entity(kafka_bootstrap, f"{prefix}.customers"))
    assert published == Counter({3: 1, 4: 1, 6: 1, 7: 1})  # nothing of the other tenant
    state = backfill_state(cfg, "customers")
    assert state is not None and state.done and (state.by, state.rows) == ("key", 4)


def test_a_poller_started_with_the_backfill_pending_takes_it_over_exactly_once(
    pg_url: str, prefix: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    rows = 40_000
    execute(
        pg_url,
        *PEOPLE_DDL,
        "INSERT INTO people SELECT g, :tenant, 'F' || g, NULL, timestamp '2024-01-01' "
        "FROM generate_series(1, :rows) g",
        params={"tenant": TENANT, "rows": rows},
    )
    live = config(pg_url, TENANT, kafka_bootstrap, prefix,
                  {"customers": people_entity("id", 20_000)}, tenant_column="user_id")  # fmt: skip
    run_once(live)
    small = copy.deepcopy(live)
    small["entities"]["customers"]["batch_size"] = 200
    # The command reads at most 4,000 rows/s (the tenant's cap holds for backfills too), so it
    # is still running when the poller starts and takes it over, on any machine.
    small["source"]["max_rows_per_second"] = 4_000
    path = write_config(small, tmp_path / "backfill.yaml")

    command = subprocess.Popen(
        backfill_cmd(path, "--entity", "customers", "--from", "1", "--to", str(rows)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        wait_until(
            lambda: (s := backfill_state(small, "customers")) is not None and s.rows >= 1_000,
            90,
            "the backfill command to commit some batches",
            interval=0.05,
        )
        # The poller finds the backfill pending, fences the command's producer and finishes
        # the range from the last committed batch.
        run_once(small)
        out, err = command.communicate(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
    assert command.returncode == 3, f"the command was not taken over:\n{out}\n{err}"
    assert "took this one over" in err

    topic = f"{prefix}.customers"
    counts = Counter(m.key for m in read_topics(kafka_bootstrap, [topic], timeout_s=120)[topic])
    assert counts == Counter(dict.fromkeys(range(1, rows + 1), 2)), (
        f"{sum(1 for n in counts.values() if n != 2)} keys not published exactly twice "
        "(once live, once by the backfill)"
    )
    final = backfill_state(small, "customers")
    assert final is not None and final.done and final.rows == rows
    wm = stored_watermarks(kafka_bootstrap, prefix, TENANT)["customers"]
    assert (wm.position.cursor, wm.rows_total) == (rows, rows)
