"""The operator's commands against the real services: status, progress bars on a terminal,
tail (missing topic, ISO timestamps, --follow), check's column hints, offsets reset's guard."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import pty
import select
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from poller.cli.main import main
from tests.integration.pipeline.helpers import (
    PEOPLE_DDL,
    POLLER_BIN,
    TENANT,
    PollerProcess,
    config,
    execute,
    people_entity,
    run_once,
    wait_until,
)

pytestmark = pytest.mark.integration


def categories_entity() -> dict[str, Any]:
    """`product_categories` from the same table, in id mode."""
    return {
        "table": "people",
        "key": "id",
        "fields": {"local_id": "id", "name": "f_name"},
        "batching": {"mode": "id", "column": "id"},
        "batch_size": 50,
    }


@pytest.fixture
def source(pg_url: str, prefix: str, kafka_bootstrap: str, tmp_path: Path) -> dict[str, Any]:
    """120 people of the tenant (and 5 of another), the config at tmp_path/c.yaml."""
    execute(pg_url, *PEOPLE_DDL)
    execute(
        pg_url,
        "INSERT INTO people SELECT g, CASE WHEN g > 120 THEN 'globex' ELSE :t END, 'F' || g, "
        "NULL, timestamp '2024-02-01 10:00:00' + g * interval '1 minute' "
        "FROM generate_series(1, 125) g",
        params={"t": TENANT},
    )
    entities = {"customers": people_entity("timestamp", 50), "product_categories":
                categories_entity()}  # fmt: skip
    cfg = config(pg_url, TENANT, kafka_bootstrap, prefix, entities, tenant_column="user_id")
    write(cfg, tmp_path)
    return cfg


def write(cfg: dict[str, Any], where: Path) -> Path:
    path = where / "c.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def cli(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(POLLER_BIN), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def inproc(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in this process (a `poller` process takes seconds to start on a busy
    machine); the config path is taken relative to `cwd`."""
    argv = [str(cwd / a) if a == "c.yaml" else a for a in args]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def status(cwd: Path) -> dict[str, Any]:
    out = inproc(cwd, "status", "--config", "c.yaml", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    answer: dict[str, Any] = json.loads(out.stdout)
    return answer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_status_shows_each_entity_and_whether_a_poller_runs(
    source: dict[str, Any], tmp_path: Path
) -> None:
    before = status(tmp_path)
    assert [e["entity"] for e in before["entities"]] == ["customers", "product_categories"]
    assert all(e["last_commit"] is None and e["rows_total"] == 0 for e in before["entities"])
    assert before["running"] is False, before  # nothing answers, nothing written

    run_once(source)
    queued = inproc(tmp_path, "backfill", "--config", "c.yaml", "--entity", "product_categories",
                 "--from", "10", "--to", "20", "--queue")  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    after = status(tmp_path)
    rows = {e["entity"]: e for e in after["entities"]}
    cust, cats = rows["customers"], rows["product_categories"]
    assert (cust["mode"], cust["rows_total"], cust["key"]) == ("timestamp", 120, 120)
    assert cust["cursor"] == "2024-02-01 12:00:00"
    assert cust["horizon"].endswith("settle 0s"), cust["horizon"]
    # The newest row is from February 2024, but nothing is newer than the watermark: no lag.
    assert (cust["lag"], cust["lag_seconds"]) == ("caught up", 0), cust
    assert (cats["mode"], cats["rows_total"], cats["cursor"]) == ("id", 120, 120)
    assert (cats["lag"], cats["lag_ids"]) == ("caught up", 0), cats
    for e in (cust, cats):
        assert e["last_commit"] is not None
        assert dt.datetime.strptime(e["last_commit"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert cats["backfill"]["state"] == "pending" and cats["backfill"]["rows"] == 0
    assert cust["backfill"] is None
    # Just written, but no endpoint of this poller answers: maybe one runs elsewhere.
    assert after["running"] is None, after

    table = inproc(tmp_path, "status", "--config", "c.yaml")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"tenant {TENANT}: poller maybe running"), lines
    body = {line.split()[0]: line for line in lines[2:] if line.strip()}
    assert set(body) == {"customers", "product_categories"}, lines
    assert "timestamp" in body["customers"] and "120" in body["customers"]
    assert "pending 10..20: 0 rows" in body["product_categories"]

    # A running poller with its metrics endpoint: status says so, and offsets reset wants --yes.
    port = free_port()
    live = {**source, "metrics": {"enabled": True, "host": "127.0.0.1", "port": port}}
    for ent in live["entities"].values():
        ent["heartbeat_interval_s"] = 0.5  # the fenced poller finds out at its next write
    write(live, tmp_path)
    proc = PollerProcess(live, tmp_path, "live")
    try:
        wait_until(lambda: status(tmp_path)["running"] is True, 60, "status: running", 0.5,
                   proc)  # fmt: skip
        refused = inproc(tmp_path, "offsets", "reset", "--config", "c.yaml",
                      "--entity", "customers", "--to", "earliest")  # fmt: skip
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "consumers of customers will see the rows after the beginning again" in (
            refused.stderr
        )
        assert "is running" in refused.stderr and "--yes" in refused.stderr
        done = inproc(tmp_path, "offsets", "reset", "--config", "c.yaml", "--entity", "customers",
                   "--to", "earliest", "--yes")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert proc.wait(60) == 3, proc.log()[-3000:]  # the running poller was fenced
    finally:
        proc.kill()
    reset = {e["entity"]: e for e in status(tmp_path)["entities"]}["customers"]
    assert reset["cursor"] is None and reset["rows_total"] == 120


def run_on_terminal(args: list[str], cwd: Path, timeout: float = 120) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; returns the exit code and output."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140"}
    proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=env)  # fmt: skip
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed: the process is gone
                    chunk = b""
                if not chunk and proc.poll() is not None:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"{args} did not finish in {timeout}s:\n{out.decode(errors='replace')}")
    finally:
        os.close(master)
    return proc.wait(10), out.decode("utf-8", errors="replace")


def test_run_once_shows_progress_bars_only_on_a_terminal(
    source: dict[str, Any], tmp_path: Path
) -> None:
    args = [str(POLLER_BIN), "run", "--once", "--config", "c.yaml"]
    code, shown = run_on_terminal(args, tmp_path)
    assert code == 0, shown
    assert "rows/s" in shown and "ETA" in shown, shown
    assert "customers" in shown and "product_categories" in shown
    assert "120/120" in shown, shown  # each bar ends full: rows published of the estimate

    code, shown = run_on_terminal(
        [
            str(POLLER_BIN),
            "backfill",
            "--config",
            "c.yaml",
            "--entity",
            "product_categories",
            "--from",
            "1",
            "--to",
            "200",
        ],
        tmp_path,
    )
    assert code == 0, shown  # fmt: skip
    assert "backfill product_categories" in shown and "120/120" in shown, shown
    assert "done: 120 rows published again" in shown

    piped = cli(tmp_path, "run", "--once", "--config", "c.yaml")
    assert piped.returncode == 0 and "rows/s" not in piped.stdout + piped.stderr

    write({**source, "logging": {"format": "json"}}, tmp_path)
    code, shown = run_on_terminal(args, tmp_path)
    assert code == 0 and "rows/s" not in shown, shown
    assert all(json.loads(line) for line in shown.splitlines() if line.strip()), shown


def test_status_after_a_finished_run_once_says_not_running(
    source: dict[str, Any], tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Right after `run --once` the watermarks are fresh, which alone reads as "maybe running";
    the run recorded its end, so status knows it is not. A row newer than the watermark turns
    "caught up" back into a lag."""
    monkeypatch.setenv("POLLER_STATE_DIR", str(tmp_path / "state"))
    write({**source, "metrics": {"enabled": False}}, tmp_path)
    ran = inproc(tmp_path, "run", "--once", "--config", "c.yaml")
    assert ran.returncode == 0, ran.stderr
    after = status(tmp_path)
    assert after["running"] is False, after
    assert any("ended at" in e for e in after["running_evidence"]), after
    assert {e["entity"]: e["lag"] for e in after["entities"]} == {
        "customers": "caught up",
        "product_categories": "caught up",
    }
    table = inproc(tmp_path, "status", "--config", "c.yaml")
    assert table.stdout.startswith(f"tenant {TENANT}: poller not running"), table.stdout
    execute(
        pg_url,
        "INSERT INTO people VALUES (500, :t, 'New', NULL, timestamp '2024-03-01 00:00:00')",
        params={"t": TENANT},
    )
    later = {e["entity"]: e for e in status(tmp_path)["entities"]}
    assert later["customers"]["lag_seconds"] > 86_400, later["customers"]
    assert later["product_categories"]["lag"] == "380 ids", later["product_categories"]


def test_tail_says_to_run_first_prints_iso_times_and_follows(
    source: dict[str, Any], tmp_path: Path, pg_url: str
) -> None:
    missing = inproc(tmp_path, "tail", "--config", "c.yaml", "--entity", "customers")
    assert missing.returncode == 2
    assert f"topic {source['kafka']['topic_prefix']}.customers does not exist yet" in (
        missing.stderr
    )
    assert "run the poller first" in missing.stderr

    run_once(source)
    tailed = inproc(tmp_path, "tail", "--config", "c.yaml", "--entity", "customers",
                 "--limit", "2")  # fmt: skip
    assert tailed.returncode == 0, tailed.stderr
    first = json.loads(tailed.stdout.splitlines()[0])
    at = dt.datetime(2024, 2, 1, 10) + dt.timedelta(minutes=int(first["local_id"]))
    assert first["updated_at"] == at.strftime("%Y-%m-%dT%H:%M:00.000000Z"), first
    assert first["_timestamp"] == first["updated_at"], first

    follow = subprocess.Popen(
        [str(POLLER_BIN), "tail", "--config", "c.yaml", "--entity", "customers", "--follow",
         "--from-beginning"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert follow.stdout is not None
        lines = [follow.stdout.readline() for _ in range(120)]
        assert all(json.loads(line)["local_id"] for line in lines)
        execute(pg_url, "INSERT INTO people VALUES (500, :t, 'Late', NULL, "
                "timestamp '2024-02-02 00:00:00')", params={"t": TENANT})  # fmt: skip
        run_once(source)
        new = json.loads(follow.stdout.readline())  # blocks until the new row is committed
        assert new["local_id"] == "500" and new["updated_at"] == "2024-02-02T00:00:00.000000Z"
        follow.send_signal(signal.SIGINT)
        assert follow.wait(30) == 0, follow.stderr.read() if follow.stderr else ""
    finally:
        with contextlib.suppress(ProcessLookupError):
            follow.kill()


def test_check_suggests_the_closest_column(source: dict[str, Any], tmp_path: Path) -> None:
    source["entities"]["customers"]["fields"]["first_name"] = "fname"
    source["entities"]["customers"]["batching"]["column"] = "updated"
    write(source, tmp_path)
    checked = inproc(tmp_path, "check", "--config", "c.yaml")
    assert checked.returncode == 8
    assert "(column 'fname'): not found; did you mean 'f_name'?" in checked.stdout, checked.stdout
    assert "column 'updated' not found; did you mean 'updated_at'?" in checked.stdout
