"""`poller verify` on the bench table: rows/s and peak RSS of a verify that finds the topic equal
after a copy, and the proof that it names exactly the keys changed behind the poller's back.

The table is a generated copy of the bench table of its own (`customers_verify`), dropped at
the end: the test changes it. Before the copy some rows are set aside; after it they come back
(added behind the poller's back: missing), others are deleted (extra) and others get a new
e-mail (different: `id` mode never re-reads a row). `verify --json` must name exactly those.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench import dataset, e2e
from bench.raw import delete_topics
from poller.errors import EXIT_DIFFERENCES
from poller.source import native_pg

TABLE = "customers_verify"
KEEP = "customers_verify_keep"
ADDED = (500, 600, 700)  # set aside before the copy, back after it: missing from the topic
DELETED = (1000, 2000, 3000)  # deleted after the copy: extra in the topic
ALTERED = (10, 20, 30)  # e-mail changed after the copy: different


@dataclass
class Child:
    code: int
    wall_s: float
    peak_rss_mb: float
    cpu_s: float
    stdout: str
    stderr: str


def run_child(args: list[str], timeout_s: float = 3600, env: dict[str, str] | None = None) -> Child:
    """`python -m poller ARGS` with its wall time, peak RSS (VmHWM) and CPU time."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "poller", *args], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, cwd=e2e.REPO_ROOT,
                                env={**os.environ, **(env or {})})  # fmt: skip
        hwm, deadline = 0, time.monotonic() + timeout_s
        while True:
            hwm = max(hwm, e2e._vm_hwm_kb(proc.pid))  # before reaping: /proc goes with it
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                code = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.02)
        wall = time.monotonic() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        return Child(code, wall, hwm / 1024, usage.ru_utime + usage.ru_stime, stdout, stderr)


def _ids(ids: tuple[int, ...]) -> str:
    return ", ".join(str(int(i)) for i in ids)


def measure(database: str, rows: int) -> dict[str, Any]:
    """Copy the table, verify (measured), change it behind the poller's back, verify again."""
    engine = dataset.ensure_database(database)
    dataset.ensure_table(engine, database, TABLE, rows)
    raw = e2e.poller_config(database, TABLE)
    raw["logging"] = {"format": "json", "level": "WARNING"}
    if "schema_registry" not in raw:  # the bench's config names no registry: JSON keys
        raw["kafka"].setdefault("format", "single_object")
    cfg = e2e.app_config(raw)
    out: dict[str, Any] = {}
    try:
        with engine.connect() as c:
            c.exec_driver_sql(f"DROP TABLE IF EXISTS {KEEP}")
            c.exec_driver_sql(
                f"CREATE TABLE {KEEP} AS SELECT * FROM {TABLE} "  # noqa: S608
                f"WHERE customer_id IN ({_ids(ADDED)})"
            )
            c.exec_driver_sql(f"DELETE FROM {TABLE} WHERE customer_id IN ({_ids(ADDED)})")  # noqa: S608
        with tempfile.TemporaryDirectory(prefix="poller-bench-verify-") as tmp:
            conf = Path(tmp) / "poller.yaml"
            conf.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
            copy = run_child(["run", "--config", str(conf), "--once"])
            if copy.code != 0:
                raise RuntimeError(f"copy failed ({copy.code}): {copy.stderr[-2000:]}")
            equal = run_child(["verify", "--config", str(conf), "--json"])
            report = json.loads(equal.stdout or "{}")
            counts = report.get("entities", {}).get("customers", {}).get("counts", {})
            if equal.code != 0 or counts.get("equal") != rows - len(ADDED):
                raise RuntimeError(f"verify after the copy: exit {equal.code}, {counts}")
            out.update(
                verify_rows_per_s=rows / equal.wall_s,
                verify_wall_s=equal.wall_s,
                verify_peak_rss_mb=equal.peak_rss_mb,
                verify_cpu_s=equal.cpu_s,
            )
            if database == "postgresql" and native_pg.available():
                # The same verify on the Python path (the default run above is the native one).
                py = run_child(["verify", "--config", str(conf), "--json"],
                               env={"POLLER_NATIVE": "0"})  # fmt: skip
                if py.code != 0:
                    raise RuntimeError(f"verify on the Python path: exit {py.code}")
                out.update(
                    verify_python_rows_per_s=rows / py.wall_s,
                    verify_python_cpu_s=py.cpu_s,
                    verify_python_peak_rss_mb=py.peak_rss_mb,
                )
            with engine.connect() as c:
                c.exec_driver_sql(f"INSERT INTO {TABLE} SELECT * FROM {KEEP}")  # noqa: S608
                c.exec_driver_sql(f"DELETE FROM {TABLE} WHERE customer_id IN ({_ids(DELETED)})")  # noqa: S608
                c.exec_driver_sql(
                    f"UPDATE {TABLE} SET email = 'changed@example.com' "  # noqa: S608
                    f"WHERE customer_id IN ({_ids(ALTERED)})"
                )
            diff = run_child(["verify", "--config", str(conf), "--json", "--sample", "100"])
            found = json.loads(diff.stdout or "{}").get("entities", {}).get("customers", {})
            named = {k: sorted(d["key"] for d in found.get(k, [])) for k in
                     ("missing", "extra", "different")}  # fmt: skip
            wanted = {"missing": list(ADDED), "extra": list(DELETED), "different": list(ALTERED)}
            out.update(
                verify_diff_exit=diff.code,
                verify_named=named,
                verify_names_exactly=diff.code == EXIT_DIFFERENCES and named == wanted,
                verify_diff_wall_s=diff.wall_s,
            )
    finally:
        delete_topics(cfg.kafka.bootstrap_servers, e2e.topics_of(cfg))
        with engine.connect() as c:
            c.exec_driver_sql(f"DROP TABLE IF EXISTS {KEEP}")
            c.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
            c.exec_driver_sql(f"DELETE FROM bench_meta WHERE table_name = '{TABLE}'")  # noqa: S608
        engine.dispose()
    return out


def main() -> int:
    """`python -m bench.verify [ROWS] [DATABASES]`: this part of the bench on its own."""
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    dbs = sys.argv[2].split(",") if len(sys.argv) > 2 else ["postgresql", "mariadb"]
    for db in dbs:
        print(db, json.dumps(measure(db, rows), default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
