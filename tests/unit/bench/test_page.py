"""docs/performance.md's tables come from bench/results/latest.json (bench/page.py), and a bench
run that leaves out one of the figures it must write fails instead of dropping it."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import pytest

from bench import page, report

FULL_ARGS = argparse.Namespace(databases=["postgresql", "mariadb"], skip_e2e=False,
                               skip_confluent=False, skip_5x=False, skip_verify=False,
                               peer="debezium")  # fmt: skip


def test_the_performance_page_shows_latest_json() -> None:
    # Stale when latest.json changed without `python -m bench.page` (make bench runs it).
    payload = json.loads((report.RESULTS / "latest.json").read_text(encoding="utf-8"))
    text = page.PAGE.read_text(encoding="utf-8")
    assert page.render(text, payload) == text, (
        "docs/performance.md is stale: run `python -m bench.page` (make bench does)"
    )


def _figures(keys: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in keys:
        *parents, last = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = 1.0
    return out


def test_a_complete_run_misses_nothing_and_names_the_issues_figures() -> None:
    need = report.required_figures(FULL_ARGS)
    for key in ("native.end_to_end_rows_per_s", "python.end_to_end_rows_per_s",
                "raw_copy_rows_per_s", "peer.debezium.snapshot_rows_per_s",
                "native.poller_cpu_s", "native.peak_rss_mb", "native.bytes_per_record",
                "peer.debezium.cpu_s.total", "peer.debezium.bytes_per_record"):  # fmt: skip
        assert key in need["postgresql"]
    assert "end_to_end_rows_per_s" in need["mariadb"]
    assert "raw_copy_rows_per_s" not in need["mariadb"]
    results = {db: _figures(keys) for db, keys in need.items()}
    assert report.missing_figures(results, FULL_ARGS) == []


def test_a_dropped_or_nan_figure_is_reported() -> None:
    need = report.required_figures(FULL_ARGS)
    results = {db: _figures(keys) for db, keys in need.items()}
    del results["postgresql"]["native"]  # e.g. the extension was not installed
    results["postgresql"]["peer"]["debezium"]["snapshot_rows_per_s"] = math.nan
    del results["mariadb"]
    missing = report.missing_figures(results, FULL_ARGS)
    assert ("postgresql", "native.end_to_end_rows_per_s") in missing
    assert ("postgresql", "native.bytes_per_record") in missing
    assert ("postgresql", "peer.debezium.snapshot_rows_per_s") in missing
    assert ("mariadb", "raw_fetch_rows_per_s") in missing
    assert ("postgresql", "python.end_to_end_rows_per_s") not in missing


def test_skipped_parts_are_not_required() -> None:
    args = argparse.Namespace(**{**vars(FULL_ARGS), "skip_e2e": True, "peer": None,
                                 "databases": ["postgresql"]})  # fmt: skip
    need = report.required_figures(args)
    assert list(need) == ["postgresql"]
    assert "raw_copy_rows_per_s" in need["postgresql"]
    assert not [k for k in need["postgresql"] if k.startswith(("native", "peer", "end_to"))]


def test_render_replaces_only_the_marked_sections() -> None:
    begin, end = page._marks("results")
    pbegin, pend = page._marks("peer")
    text = f"intro\n{begin}\nold table\n{end}\nmiddle\n{pbegin}\nold\n{pend}\noutro\n"
    payload = json.loads((report.RESULTS / "latest.json").read_text(encoding="utf-8"))
    out = page.render(text, payload)
    assert out.startswith("intro\n") and out.endswith("\noutro\n") and "\nmiddle\n" in out
    assert "old table" not in out
    assert page.render(out, payload) == out  # idempotent
    with pytest.raises(ValueError, match="peer"):
        page.render(f"{begin}\n{end}\n", payload)


def test_a_verify_that_names_the_wrong_keys_fails_the_run() -> None:
    # `poller verify` exits 10 (EXIT_DIFFERENCES) when it finds differences; the bench took
    # exit 1 for that and wrote False without failing.
    right = {"verify_names_exactly": True, "verify_diff_exit": 10}
    wrong = {"verify_names_exactly": False, "verify_diff_exit": 10, "verify_named": {}}
    assert report.wrong_answers({"postgresql": right, "mariadb": {}}) == []
    (err,) = report.wrong_answers({"postgresql": right, "mariadb": wrong})
    assert err.startswith("mariadb: verify did not name exactly")
