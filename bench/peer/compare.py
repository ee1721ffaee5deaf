"""The peer comparison: a private logical PostgreSQL with the bench table, then N rounds that
alternate the poller and Debezium (order swapped every round, so the machine's other load hits
both alike), each copying the table and then a catch-up; medians per tool."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.peer import debezium, poller_side
from bench.peer.cluster import LogicalPostgres
from bench.peer.connect import fetch_plugins
from bench.peer.figures import ToolRun, compare, summarize
from bench.report import RESULTS

log = logging.getLogger("bench")
PG_PORTS = range(5470, 5480)
REST_PORTS = range(8083, 8090)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(rows: int, catch_up: int, repeat: int, bootstrap: str, registry: str) -> dict[str, Any]:
    """Figures for `databases.postgresql.peer`: per tool, and the poller's over Debezium's."""
    plugins = fetch_plugins(debezium.POM, "debezium-postgres-apicurio")
    setup = debezium.Setup(bootstrap, registry.replace("/apis/ccompat/v7", "/apis/registry/v2"),
                           plugins, REST_PORTS)  # fmt: skip
    pg = LogicalPostgres(PG_PORTS)
    load_before = _load()
    t0 = time.monotonic()
    runs: dict[str, list[ToolRun]] = {"debezium": [], "poller": []}
    try:
        pg.create()
        log.info("peer: PostgreSQL %s (wal_level=logical) on %d, loading %d rows",
                 pg.version, pg.port, rows)  # fmt: skip
        pg.load(rows)
        tools: dict[str, Callable[[], ToolRun]] = {
            "debezium": lambda: debezium.run(setup, pg, rows, catch_up),
            "poller": lambda: poller_side.run(pg, rows, catch_up),
        }
        for i in range(repeat):
            for name in ("debezium", "poller") if i % 2 == 0 else ("poller", "debezium"):
                r = tools[name]()
                pg.restore(rows)
                log.info("peer: %s run %d: snapshot %.1f s (%.0f rows/s), catch-up %.1f s, "
                         "CPU %s, %.0f MB peak RSS, %.0f B/record", name, i + 1,
                         r.snapshot.copy_s, rows / r.snapshot.copy_s, r.catch_up.copy_s,
                         {k: round(v, 1) for k, v in r.snapshot.cpu_s.items()},
                         r.peak_rss_mb, r.bytes_per_record)  # fmt: skip
                runs[name].append(r)
    finally:
        pg.drop()
    out: dict[str, Any] = {
        "debezium": summarize(
            runs["debezium"],
            {"version": debezium.VERSION, "connect": "Kafka Connect 4.1.1 standalone"},
        ),
        "poller": summarize(runs["poller"], {"format": "confluent"}),
        "repeat": repeat,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(time.monotonic() - t0, 1),
        "load_average": {"before": load_before, "after": _load()},
        "cores": os.cpu_count(),
    }
    out["poller_over_debezium"] = compare(out["poller"], out["debezium"])
    return out


def merge(path: Path, peer: dict[str, Any]) -> Path:
    """Put `peer` under databases.postgresql.peer of an existing results file, the rest kept
    (`make bench-peer` measures only the peer)."""
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    doc.setdefault("databases", {}).setdefault("postgresql", {})["peer"] = peer
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


TOOL_CPU = {"poller": "poller", "debezium": "connect"}
LABELS = (
    ("snapshot (first to last record)", "snapshot_rows_per_s", "{:,.0f} rows/s"),
    ("snapshot (process start to last)", "snapshot_wall_rows_per_s", "{:,.0f} rows/s"),
    ("catch-up (first to last record)", "catch_up_rows_per_s", "{:,.0f} rows/s"),
    ("peak RSS", "peak_rss_mb", "{:,.0f} MB"),
    ("bytes per record on the broker", "bytes_per_record", "{:,.0f} B"),
)


def table(peer: dict[str, Any]) -> str:
    tools = ("poller", "debezium")
    lines = [f"\npeer comparison (private PostgreSQL, wal_level=logical; medians of "
             f"{peer['repeat']}; load average {peer['load_average']})",
             f"{'':<36}" + "".join(f"{t:>20}" for t in tools)]  # fmt: skip
    for label, key, fmt in LABELS:
        lines.append(f"{label:<36}" + "".join(f"{fmt.format(peer[t][key]):>20}" for t in tools))
    for phase in ("cpu_s", "catch_up_cpu_s"):
        cells = [f"{peer[t][phase][TOOL_CPU[t]]:.1f}+{peer[t][phase]['database']:.1f}"
                 for t in tools]  # fmt: skip
        lines.append(f"{phase + ' (tool+database)':<36}" + "".join(f"{c:>20}" for c in cells))
    ratio = peer["poller_over_debezium"]
    lines.append("poller / debezium: " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))
    return "\n".join(lines)


def run_only(args: argparse.Namespace, bootstrap: str, registry: str) -> int:
    """`make bench-peer`: the comparison alone, merged into results/latest.json."""
    try:
        peer = measure(args.rows, args.peer_catch_up, args.e2e_repeat, bootstrap, registry)
    except Exception as exc:
        log.error("peer comparison failed: %s", exc)
        return 1
    print(table(peer))
    print(f"\nwritten: {merge(RESULTS / 'latest.json', peer)}")
    return 0


def markdown(peer: dict[str, Any]) -> str:
    """The peer figures of a latest.json as a Markdown table (for docs/performance.md)."""
    tools = ("poller", "debezium")
    out = ["| | poller | Debezium |", "|---|---:|---:|"]
    for label, key, fmt in LABELS:
        out.append(f"| {label} | " + " | ".join(fmt.format(peer[t][key]) for t in tools) + " |")
    for phase, label in (("cpu_s", "CPU s, snapshot"), ("catch_up_cpu_s", "CPU s, catch-up")):
        cells = [f"{peer[t][phase][TOOL_CPU[t]]:.1f} + {peer[t][phase]['database']:.1f}"
                 for t in tools]  # fmt: skip
        out.append(f"| {label} (tool + database) | " + " | ".join(cells) + " |")
    ratio = peer["poller_over_debezium"]
    rows = peer["poller"]["rows"]
    out += ["", "poller / Debezium: " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()),
            "", f"{rows:,} rows + {peer['poller']['catch_up_rows']:,} catch-up rows, medians of "
            f"{peer['repeat']} alternated runs; load average (1, 5, 15 min) before "
            f"{peer['load_average']['before']}, after {peer['load_average']['after']} on "
            f"{peer['cores']} cores."]  # fmt: skip
    return "\n".join(out)


if __name__ == "__main__":
    import sys

    doc = json.loads(
        Path(sys.argv[1] if len(sys.argv) > 1 else RESULTS / "latest.json").read_text()
    )
    print(markdown(doc["databases"]["postgresql"]["peer"]))
