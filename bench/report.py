"""The machine's description, the targets, the printed table and results/latest.json."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import confluent_kafka
import psutil
import sqlalchemy as sa

RESULTS = Path(__file__).resolve().parent / "results"

# (label, key, format) of the printed table, one column per database.
ROWS: tuple[tuple[str, str, str], ...] = (
    ("raw fetch (driver, server-side cursor)", "raw_fetch_rows_per_s", "{:,.0f} rows/s"),
    ("raw COPY ... (FORMAT BINARY), bytes only", "raw_copy_rows_per_s", "{:,.0f} rows/s"),
    ("  COPY stream per row", "raw_copy_bytes_per_row", "{:.0f} B"),
    ("poller SourceReader alone (1 thread)", "reader_fetch_rows_per_s", "{:,.0f} rows/s"),
    ("raw produce (no transactions)", "raw_produce_msgs_per_s", "{:,.0f} msgs/s"),
    ("raw produce (1 transaction/10k msgs)", "raw_produce_txn_msgs_per_s", "{:,.0f} msgs/s"),
    ("encode: poller build_encoder", "encode_rows_per_s", "{:,.0f} rows/s"),
    ("encode: fastavro.schemaless_writer", "fastavro_rows_per_s", "{:,.0f} rows/s"),
    ("avg message value", "avg_payload_bytes", "{:.0f} B"),
    ("end to end (copy, excl. start-up)", "end_to_end_rows_per_s", "{:,.0f} rows/s"),
    ("end to end (wall, incl. start-up)", "end_to_end_wall_rows_per_s", "{:,.0f} rows/s"),
    ("  native path (copy)", "native.end_to_end_rows_per_s", "{:,.0f} rows/s"),
    ("    poller CPU per 1M rows", "native.poller_cpu_s_per_1m_rows", "{:.1f} s"),
    ("    peak RSS", "native.peak_rss_mb", "{:.0f} MB"),
    ("    bytes per record on the broker", "native.bytes_per_record", "{:.0f} B"),
    ("  Python path, POLLER_NATIVE=0 (copy)", "python.end_to_end_rows_per_s", "{:,.0f} rows/s"),
    ("    poller CPU per 1M rows", "python.poller_cpu_s_per_1m_rows", "{:.1f} s"),
    ("    peak RSS", "python.peak_rss_mb", "{:.0f} MB"),
    ("    bytes per record on the broker", "python.bytes_per_record", "{:.0f} B"),
    ("  native / Python path", "native_to_python", "{:.2f}x"),
    ("  mysqlclient, mysql:// (copy)", "mysqlclient.end_to_end_rows_per_s", "{:,.0f} rows/s"),
    ("  PyMySQL, mysql+pymysql (copy)", "pymysql.end_to_end_rows_per_s", "{:,.0f} rows/s"),
    ("  mysqlclient / PyMySQL", "mysqlclient_to_pymysql", "{:.2f}x"),
    ("  native / raw COPY", "native_to_raw_copy", "{:.0%}"),
    ("end to end, Confluent wire format", "end_to_end_confluent_rows_per_s", "{:,.0f} rows/s"),
    ("  Confluent / single-object", "confluent_to_single_object", "{:.1%}"),
    ("poller start-up + shutdown", "startup_s", "{:.2f} s"),
    ("end to end / raw fetch", "ratio_to_raw_fetch", "{:.0%}"),
    ("CPU-bound ceiling (cores / parts' CPU)", "cpu_bound_ceiling_rows_per_s", "{:,.0f} rows/s"),
    ("poller CPU time / wall time", "poller_cpu_per_wall", "{:.2f} cores"),
    ("end to end, batch_size 100000", "end_to_end_rows_per_s_batch_100k", "{:,.0f} rows/s"),
    ("peak RSS, batch_size 100000", "peak_rss_mb_batch_100k", "{:.0f} MB"),
    ("txn cost per 10k msgs (raw; noisy)", "txn_cost_ms", "{:.1f} ms"),
    ("  as share of end-to-end time", "txn_share", "{:.0%}"),
    ("peak RSS (1x rows)", "peak_rss_mb", "{:.0f} MB"),
    ("peak RSS (5x rows)", "peak_rss_mb_5x", "{:.0f} MB"),
    ("verify (wall, incl. start-up)", "verify_rows_per_s", "{:,.0f} rows/s"),
    ("  verify on the Python path, POLLER_NATIVE=0", "verify_python_rows_per_s", "{:,.0f} rows/s"),
    ("verify peak RSS", "verify_peak_rss_mb", "{:.0f} MB"),
    ("verify names exactly the changed keys", "verify_names_exactly", "{}"),
)
CPU_ROWS = (
    "raw_fetch",
    "raw_copy",
    "reader_fetch",
    "encode",
    "raw_produce",
    "raw_produce_txn",
    "end_to_end",
)


def _server_versions(engines: Mapping[str, sa.Engine]) -> dict[str, str]:
    out = {}
    for name, engine in engines.items():
        with engine.connect() as c:
            out[name] = str(c.exec_driver_sql("SELECT version()").scalar())
    services = Path(__file__).resolve().parent.parent / "scripts" / "services"
    m = (
        re.search(r"^KAFKA_VERSION=(\S+)", services.read_text(), re.M)
        if services.exists()
        else None
    )
    if m:
        out["kafka"] = m.group(1)
    return out


DISTS = {"confluent_kafka": "confluent-kafka", "psycopg2": "psycopg2-binary",
         "pymysql": "PyMySQL", "fastavro": "fastavro", "sqlalchemy": "SQLAlchemy"}  # fmt: skip


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def poller_revision() -> str:
    """HEAD's short hash, "+dirty" when poller/ has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "poller"], cwd=root, text=True,
                               capture_output=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine(engines: Mapping[str, sa.Engine]) -> dict[str, Any]:
    cpu = platform.processor()
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        **{name: _dist_version(dist) for name, dist in DISTS.items()},
        "librdkafka": confluent_kafka.libversion()[0],
        "servers": _server_versions(engines),
        "poller_revision": poller_revision(),
    }


def lookup(figures: Mapping[str, Any], key: str) -> Any:
    """A figure by its dotted name (`native.end_to_end_rows_per_s`); None when absent."""
    value: Any = figures
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


_PATH_FIGURES = ("end_to_end_rows_per_s", "poller_cpu_s", "peak_rss_mb", "bytes_per_record")
_PEER_FIGURES = ("snapshot_rows_per_s", "catch_up_rows_per_s", "cpu_s.total", "peak_rss_mb",
                 "bytes_per_record")  # fmt: skip


def required_figures(args: Any) -> dict[str, list[str]]:
    """Per database, the dotted names a run with these arguments must write: any one absent
    (or NaN) is a failed measurement, so the run exits non-zero instead of dropping it."""
    out: dict[str, list[str]] = {}
    for db in args.databases:
        keys = [
            "raw_fetch_rows_per_s",
            "cpu_s_per_1m_rows.raw_fetch",
            "reader_fetch_rows_per_s",
            "encode_rows_per_s",
            "raw_produce_msgs_per_s",
            "raw_produce_txn_msgs_per_s",
        ]
        if db == "postgresql":
            keys += ["raw_copy_rows_per_s", "cpu_s_per_1m_rows.raw_copy", "raw_copy_bytes_per_row"]
        if not args.skip_e2e:
            keys += [
                "end_to_end_rows_per_s",
                "peak_rss_mb",
                "poller_cpu_per_wall",
                "cpu_s_per_1m_rows.end_to_end",
                "end_to_end_rows_per_s_batch_100k",
            ]
            if not args.skip_confluent:
                keys.append("end_to_end_confluent_rows_per_s")
            if not args.skip_5x:
                keys.append("peak_rss_mb_5x")
            if not args.skip_verify:
                keys += ["verify_rows_per_s", "verify_peak_rss_mb", "verify_names_exactly"]
            if db == "postgresql":
                keys += [f"{p}.{k}" for p in ("native", "python") for k in _PATH_FIGURES]
                keys += ["native_to_python", "native_to_raw_copy"]
                if not args.skip_verify:
                    keys.append("verify_python_rows_per_s")
            if getattr(args, "baseline", None):
                keys += ["baseline.end_to_end_rows_per_s", "python_to_baseline"]
        out[db] = keys
    if getattr(args, "peer", None):  # measured on its own logical PostgreSQL cluster
        out.setdefault("postgresql", []).extend(
            f"peer.{tool}.{k}" for tool in (args.peer, "poller") for k in _PEER_FIGURES
        )
    return out


def missing_figures(results: Mapping[str, Mapping[str, Any]], args: Any) -> list[tuple[str, str]]:
    """(database, dotted name) of every required figure the results lack."""
    missing = []
    for db, keys in required_figures(args).items():
        for key in keys:
            v = lookup(results.get(db, {}), key)
            if v is None or (isinstance(v, float) and math.isnan(v)):
                missing.append((db, key))
    return missing


def wrong_answers(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Checks the run makes besides its figures: a verify that does not name exactly the keys
    changed behind the poller's back is a failure, not a figure."""
    out = []
    for db, r in results.items():
        if "verify_names_exactly" in r and r["verify_names_exactly"] is not True:
            out.append(f"{db}: verify did not name exactly the changed keys: exit "
                       f"{r.get('verify_diff_exit')}, {r.get('verify_named')}")  # fmt: skip
    return out


def check_targets(results: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets: PASS, MISS, or n/a when the figure was not measured."""
    out: list[dict[str, Any]] = []

    def add(name: str, db: str, value: float | None, ok: bool | None, limit: str) -> None:
        status = "n/a" if value is None or ok is None else ("PASS" if ok else "MISS")
        out.append({"target": name, "database": db, "value": value, "limit": limit,
                    "status": status})  # fmt: skip

    for db, r in results.items():
        ratio = r.get("ratio_to_raw_fetch")
        if db == "postgresql":
            add("end_to_end >= 50% of raw fetch", db, ratio,
                None if ratio is None else ratio >= 0.5, ">= 0.50")  # fmt: skip
            speedup, of_copy = r.get("native_to_python"), r.get("native_to_raw_copy")
            add("native >= 2x the Python path", db, speedup,
                None if speedup is None else speedup >= 2, ">= 2.00")  # fmt: skip
            add("native >= 70% of raw COPY", db, of_copy,
                None if of_copy is None else of_copy >= 0.7, ">= 0.70")  # fmt: skip
        if db == "mariadb":  # issue 18: mysqlclient vs today's PyMySQL; Confluent within 5%
            fast, conf = r.get("mysqlclient_to_pymysql"), r.get("confluent_to_single_object")
            add("mysqlclient >= 1.5x PyMySQL", db, fast,
                None if fast is None else fast >= 1.5, ">= 1.50")  # fmt: skip
            add("Confluent >= 95% of single-object", db, conf,
                None if conf is None else conf >= 0.95, ">= 0.95")  # fmt: skip
        for key in ("peak_rss_mb", "peak_rss_mb_5x"):
            v = r.get(key)
            add(f"{key} <= 300 MB", db, v, None if v is None else v <= 300, "<= 300")
        one, five = r.get("peak_rss_mb"), r.get("peak_rss_mb_5x")
        growth = None if one is None or five is None else (five - one) / one
        add("peak RSS 5x within 10% of 1x", db, growth,
            None if growth is None else abs(growth) <= 0.10, "<= 0.10")  # fmt: skip
    return out


def _cpu_cell(v: Mapping[str, float], db: str) -> str:
    if not v:
        return "n/a"
    parts = [v.get("client", 0.0), v.get(db, 0.0), v.get("kafka", 0.0)]
    return "+".join(f"{x:.1f}" for x in parts) + f" [+{v.get('other', 0.0):.1f}]"


def print_table(
    results: Mapping[str, Mapping[str, Any]],
    targets: list[dict[str, Any]],
    rows: int,
    repeat: int,
    e2e_repeat: int,
) -> None:
    dbs = list(results)
    print(f"\npoller benchmark: {rows:,} rows; medians of {repeat} runs, end to end of "
          f"{e2e_repeat} (batch 100000 and 5x rows: 1 run)")  # fmt: skip
    print(f"{'':<40}" + "".join(f"{db:>22}" for db in dbs))
    for label, key, fmt in ROWS:
        cells = []
        for db in dbs:
            v = lookup(results[db], key)
            cells.append("n/a" if v is None else fmt.format(v))
        print(f"{label:<40}" + "".join(f"{c:>22}" for c in cells))
    print("CPU core-seconds per 1M rows: client (bench/poller) + database + kafka [+ other load]")
    for part in CPU_ROWS:
        cells = []
        for db in dbs:
            v = results[db].get("cpu_s_per_1m_rows", {}).get(part)
            cells.append("n/a" if not v else _cpu_cell(v, db))
        print(f"  {part:<38}" + "".join(f"{c:>22}" for c in cells))
    print("\ntargets:")
    for t in targets:
        v = t["value"]
        shown = "n/a" if v is None else f"{v:,.2f}"
        print(f"  {t['status']:<5} {t['database']:<11} {t['target']:<34} {shown} ({t['limit']})")


def write_json(payload: dict[str, Any], path: Path | None = None) -> Path:
    path = path or RESULTS / "latest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"generated_at": datetime.now(UTC).isoformat(timespec="seconds"), **payload}
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


def markdown(payload: Mapping[str, Any]) -> str:
    """The results of a latest.json as Markdown tables (for docs/performance.md)."""
    results: Mapping[str, Mapping[str, Any]] = payload["databases"]
    dbs = list(results)
    out = ["| | " + " | ".join(dbs) + " |", "|---|" + "---:|" * len(dbs)]
    for label, key, fmt in ROWS:
        values = [lookup(results[db], key) for db in dbs]
        cells = ["n/a" if v is None else fmt.format(v) for v in values]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    out += ["", "CPU core-seconds per 1M rows: client + database + Kafka [+ other users' load]", "",
            "| part | " + " | ".join(dbs) + " |", "|---|" + "---:|" * len(dbs)]  # fmt: skip
    for part in CPU_ROWS:
        cells = [_cpu_cell(results[db].get("cpu_s_per_1m_rows", {}).get(part) or {}, db)
                 for db in dbs]  # fmt: skip
        out.append(f"| {part} | " + " | ".join(cells) + " |")
    out += ["", "| target | database | value | limit | status |", "|---|---|---:|---:|---|"]
    for t in payload["targets"]:
        v = "n/a" if t["value"] is None else f"{t['value']:,.2f}"
        out.append(f"| {t['target']} | {t['database']} | {v} | {t['limit']} | {t['status']} |")
    m = payload["machine"]
    out += ["", f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gb']} GB; Python "
            f"{m['python']}, confluent-kafka {m['confluent_kafka']} (librdkafka {m['librdkafka']}),"
            f" psycopg2 {m['psycopg2']}, PyMySQL {m['pymysql']}; poller {m['poller_revision']}; "
            f"{payload['args']['rows']:,} rows, {payload['generated_at']}."]  # fmt: skip
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    print(markdown(json.loads(Path(sys.argv[1] if len(sys.argv) > 1 else RESULTS / "latest.json")
                              .read_text())))  # fmt: skip
