"""One tool's runs and the figures `latest.json` keeps of them under
`databases.postgresql.peer.<tool>`: medians of the alternated runs plus each run."""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Phase:
    """One copy by one tool: the initial snapshot or the catch-up."""

    rows: int
    copy_s: float  # first record produced (or the poller's "resumes after") to the last
    wall_s: float  # process start (snapshot) or the rows' commit (catch-up) to the last record
    cpu_s: dict[str, float] = field(default_factory=dict)  # "<tool process>", "database"


@dataclass
class ToolRun:
    tool: str
    snapshot: Phase
    catch_up: Phase
    peak_rss_mb: float  # the tool's process over both phases (Linux VmHWM)
    topic_bytes: int  # the data topic's partitions on the broker after both phases

    @property
    def bytes_per_record(self) -> float:
        return self.topic_bytes / (self.snapshot.rows + self.catch_up.rows)


def _median_cpu(phases: Sequence[Phase]) -> dict[str, float]:
    keys = sorted({k for p in phases for k in p.cpu_s})
    return {k: statistics.median(p.cpu_s.get(k, 0.0) for p in phases) for k in keys}


def summarize(runs: Sequence[ToolRun], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON figures of one tool: rates from the median copy time, CPU seconds (tool process
    and database) of each phase, peak RSS (max), bytes per record on the broker (median)."""
    if not runs:
        raise ValueError("no runs to summarize")
    snap = [r.snapshot for r in runs]
    catch = [r.catch_up for r in runs]
    out: dict[str, Any] = {
        **(extra or {}),
        "rows": snap[0].rows,
        "catch_up_rows": catch[0].rows,
        "snapshot_rows_per_s": snap[0].rows / statistics.median(p.copy_s for p in snap),
        "snapshot_wall_rows_per_s": snap[0].rows / statistics.median(p.wall_s for p in snap),
        "catch_up_rows_per_s": catch[0].rows / statistics.median(p.copy_s for p in catch),
        "catch_up_wall_rows_per_s": catch[0].rows / statistics.median(p.wall_s for p in catch),
        "cpu_s": _median_cpu(snap),
        "catch_up_cpu_s": _median_cpu(catch),
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
        "bytes_per_record": statistics.median(r.bytes_per_record for r in runs),
        "runs": [{**asdict(r), "bytes_per_record": r.bytes_per_record} for r in runs],
    }
    out["cpu_s"]["total"] = sum(out["cpu_s"].values())
    out["catch_up_cpu_s"]["total"] = sum(out["catch_up_cpu_s"].values())
    return out


def compare(poller: Mapping[str, Any], peer: Mapping[str, Any]) -> dict[str, float]:
    """The poller's figures over the peer's: >1 means the poller is faster / bigger."""
    return {
        "snapshot_speed": poller["snapshot_rows_per_s"] / peer["snapshot_rows_per_s"],
        "catch_up_speed": poller["catch_up_rows_per_s"] / peer["catch_up_rows_per_s"],
        "cpu_s_share": poller["cpu_s"]["total"] / peer["cpu_s"]["total"],
        "peak_rss_share": poller["peak_rss_mb"] / peer["peak_rss_mb"],
        "bytes_per_record_share": poller["bytes_per_record"] / peer["bytes_per_record"],
    }
