"""The performance tables of docs/performance.md, generated from bench/results/latest.json.

`make bench` and `make bench-peer` run `python -m bench.page` after writing the results, so the
page shows what the file holds; tests/unit/bench/test_page.py fails when the page is stale.
Only the marked sections are written; the prose around them is kept as it is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import report
from bench.peer import compare

PAGE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"
SOURCE = "bench/results/latest.json"


def _marks(name: str) -> tuple[str, str]:
    return (
        f"<!-- generated: {name}, from {SOURCE} by `python -m bench.page`; do not edit -->",
        f"<!-- end generated: {name} -->",
    )


def _fmt(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def headline(payload: Mapping[str, Any]) -> str:
    """The issue's four PostgreSQL figures side by side, with CPU, RSS and bytes beside each."""
    pg: Mapping[str, Any] = payload.get("databases", {}).get("postgresql", {})
    get = report.lookup
    cpu_copy = get(pg, "cpu_s_per_1m_rows.raw_copy.client")
    dbz = pg.get("peer", {}).get("debezium")
    rows = [
        ("native path end to end (`native`)", get(pg, "native.end_to_end_rows_per_s"),
         get(pg, "native.poller_cpu_s_per_1m_rows"), get(pg, "native.peak_rss_mb"),
         get(pg, "native.bytes_per_record")),
        ("Python path end to end (`python`, POLLER_NATIVE=0)",
         get(pg, "python.end_to_end_rows_per_s"), get(pg, "python.poller_cpu_s_per_1m_rows"),
         get(pg, "python.peak_rss_mb"), get(pg, "python.bytes_per_record")),
        ("raw `COPY … (FORMAT BINARY)`, bytes only (`raw_copy_rows_per_s`)",
         pg.get("raw_copy_rows_per_s"), cpu_copy, None, pg.get("raw_copy_bytes_per_row")),
    ]  # fmt: skip
    if dbz:
        cpu = dbz["cpu_s"].get("total")
        per_1m = None if cpu is None else cpu * 1e6 / dbz["rows"]
        rows.append(("Debezium snapshot (`peer.debezium.snapshot_rows_per_s`)",
                     dbz.get("snapshot_rows_per_s"), per_1m, dbz.get("peak_rss_mb"),
                     dbz.get("bytes_per_record")))  # fmt: skip
    out = [
        "| PostgreSQL | rows/s | CPU s per 1M rows | peak RSS | bytes per record |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, rate, cpu, rss, size in rows:
        out.append(f"| {label} | {_fmt(rate, '{:,.0f}')} | {_fmt(cpu, '{:.1f}')} | "
                   f"{_fmt(rss, '{:,.0f} MB')} | {_fmt(size, '{:,.0f} B')} |")  # fmt: skip
    out += [
        "",
        "CPU: the poller process (the bench's client for raw COPY; Connect and the database for "
        "Debezium). Bytes: on the broker (lz4) for the poller, Connect's default for Debezium "
        "(uncompressed), the COPY stream for raw COPY.",
    ]
    errors = payload.get("errors") or []
    if errors:
        out += ["", "**This run had failed measurements:**", ""]
        out += [f"- {e}" for e in errors]
    return "\n".join(out)


def sections(payload: Mapping[str, Any]) -> dict[str, str]:
    """Each marked section's body, from one results document."""
    out = {"results": headline(payload) + "\n\n" + report.markdown(payload)}
    peer = payload.get("databases", {}).get("postgresql", {}).get("peer")
    out["peer"] = compare.markdown(peer) if peer else "No peer comparison in this results file."
    return out


def render(page: str, payload: Mapping[str, Any]) -> str:
    """`page` with every marked section replaced; ValueError when a mark is missing."""
    for name, body in sections(payload).items():
        begin, end = _marks(name)
        head, found, rest = page.partition(begin)
        _, found_end, tail = rest.partition(end)
        if not found or not found_end:
            raise ValueError(f"docs/performance.md lacks the marks of section {name!r}")
        page = f"{head}{begin}\n\n{body}\n\n{end}{tail}"
    return page


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else report.RESULTS / "latest.json"
    payload = json.loads(path.read_text(encoding="utf-8"))
    PAGE.write_text(render(PAGE.read_text(encoding="utf-8"), payload), encoding="utf-8")
    print(f"written: {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
