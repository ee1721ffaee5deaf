"""The peer comparison's figure collecting (bench/peer/): the broker's log-dir output parsed,
the JSON layout under databases.postgresql.peer, and the merge into an existing results file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.peer.broker import parse_log_dirs
from bench.peer.compare import markdown, merge, table
from bench.peer.figures import Phase, ToolRun, compare, summarize

LOG_DIRS = """Querying brokers for log directories information
Received log directory information from brokers 1
{"brokers":[{"broker":1,"logDirs":[{"partitions":[{"partition":"t.public.customers-0","size":1000,"offsetLag":0,"isFuture":false},{"partition":"t.public.customers-1","size":500,"offsetLag":0,"isFuture":false},{"partition":"t.public.customers-10","size":7,"offsetLag":0,"isFuture":true},{"partition":"t.public.customers-x-0","size":99,"offsetLag":0,"isFuture":false}],"error":null,"logDir":"/data"}]}],"version":1}
"""


def test_log_dirs_sums_the_topics_partitions_only() -> None:
    # Another topic whose name starts the same, and a future replica, are not counted.
    assert parse_log_dirs(LOG_DIRS, "t.public.customers") == 1500


def test_log_dirs_without_the_topic_is_an_error_not_zero() -> None:
    with pytest.raises(ValueError, match="not in the broker"):
        parse_log_dirs(LOG_DIRS, "other")
    with pytest.raises(ValueError, match="no log-dir description"):
        parse_log_dirs("Querying brokers\n", "other")


def run(tool: str, snap_s: float, proc_cpu: float, rss: float) -> ToolRun:
    key = "poller" if tool == "poller" else "connect"
    return ToolRun(
        tool,
        Phase(1000, snap_s, snap_s + 2, {key: proc_cpu, "database": 1.0}),
        Phase(200, snap_s / 5, snap_s / 5 + 1, {key: proc_cpu / 5, "database": 0.5}),
        rss,
        120_000,
    )


def test_summary_takes_medians_and_the_peak() -> None:
    runs = [run("debezium", s, c, r) for s, c, r in ((10, 20, 900), (20, 30, 1200), (40, 10, 800))]
    out = summarize(runs, {"version": "3.6.1.Final"})
    assert out["version"] == "3.6.1.Final"
    assert out["snapshot_rows_per_s"] == pytest.approx(1000 / 20)
    assert out["snapshot_wall_rows_per_s"] == pytest.approx(1000 / 22)
    assert out["catch_up_rows_per_s"] == pytest.approx(200 / 4)
    assert out["cpu_s"] == {"connect": 20, "database": 1.0, "total": 21}
    assert out["catch_up_cpu_s"]["connect"] == pytest.approx(4)
    assert out["peak_rss_mb"] == 1200
    assert out["bytes_per_record"] == pytest.approx(100)
    assert len(out["runs"]) == 3
    assert out["runs"][0]["snapshot"]["copy_s"] == 10
    json.dumps(out)  # the layout is JSON as it stands


def test_summary_of_no_runs_is_an_error() -> None:
    with pytest.raises(ValueError):
        summarize([])


def test_compare_and_table_read_the_layout(tmp_path: Path) -> None:
    deb = summarize([run("debezium", 20, 30, 1000)])
    pol = summarize([run("poller", 4, 3, 100)])
    ratio = compare(pol, deb)
    assert ratio["snapshot_speed"] == pytest.approx(5)
    assert ratio["cpu_s_share"] == pytest.approx(4 / 31)
    assert ratio["peak_rss_share"] == pytest.approx(0.1)
    peer = {"debezium": deb, "poller": pol, "repeat": 1, "poller_over_debezium": ratio,
            "load_average": {"before": [1.0, 1.0, 1.0], "after": [1.0, 1.0, 1.0]}}  # fmt: skip
    peer |= {"cores": 2}
    assert "3.0+1.0" in table(peer) and "30.0+1.0" in table(peer)
    assert "| snapshot (first to last record) | 250 rows/s | 50 rows/s |" in markdown(peer)

    # make bench-peer: merged beside the other figures, which stay.
    path = tmp_path / "latest.json"
    path.write_text(json.dumps({"databases": {"postgresql": {"raw_fetch_rows_per_s": 1.0},
                                              "mariadb": {}}, "args": {}}))  # fmt: skip
    merge(path, peer)
    doc = json.loads(path.read_text())
    assert doc["databases"]["postgresql"]["raw_fetch_rows_per_s"] == 1.0
    assert doc["databases"]["postgresql"]["peer"]["debezium"]["snapshot_rows_per_s"] == 50
    assert "mariadb" in doc["databases"] and doc["args"] == {}
