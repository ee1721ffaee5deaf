"""`make bench` / `python -m bench.run`: the poller's throughput and memory against the raw
components, on the same generated table, in the same run.

Per database: raw driver fetch, the poller's reader alone, a plain producer, the Avro encoders,
then `poller run --once` end to end (batch 10,000 and 100,000, and on 5x the rows for memory),
then `poller verify` on a copy (rows/s, peak RSS, and that it names exactly the changed keys).
Prints a table and writes bench/results/latest.json. Exit 0 whether targets pass or miss;
non-zero only when a measurement failed.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

from bench import baseline, dataset, e2e, raw, report, verify
from bench.cpu import CpuMeter, per_million
from bench.peer import compare as peer_compare
from poller.avro.schemas import load_schema
from poller.config.drivers import mysqlclient_installed, with_driver
from poller.source import native_pg
from poller.source.reader import make_engine

log = logging.getLogger("bench")
T = TypeVar("T")
TXN_EVERY = 10_000  # messages per transaction: the poller's default batch_size


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description="poller benchmark")
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in the table (default 1M)")
    p.add_argument("--databases", default="postgresql,mariadb",
                   help="comma-separated: postgresql, mariadb")  # fmt: skip
    p.add_argument("--repeat", type=int, default=3, help="runs of each quick part (median)")
    p.add_argument("--e2e-repeat", type=int, default=3, help="end-to-end runs at 1x (median)")
    p.add_argument("--sample", type=int, default=100_000, help="rows encoded per encode run")
    p.add_argument("--skip-5x", action="store_true", help="skip the 5x-rows memory run")
    p.add_argument("--skip-e2e", action="store_true", help="raw baselines only")
    p.add_argument("--skip-confluent", action="store_true",
                   help="end to end in single-object encoding only")  # fmt: skip
    p.add_argument("--skip-verify", action="store_true", help="skip `poller verify`")
    p.add_argument(
        "--peer",
        choices=["debezium"],
        default=None,
        help="also measure a peer on a private logical PostgreSQL (bench/peer/)",
    )
    p.add_argument(
        "--peer-only",
        action="store_true",
        help="only the peer comparison, merged into results/latest.json",
    )
    p.add_argument("--baseline", default=None, metavar="REF",
                   help="also run this git revision (a tag, a commit) end to end, in turn with "
                        "this tree, on the Python path (bench/baseline.py)")  # fmt: skip
    p.add_argument("--peer-catch-up", type=int, default=200_000,
                   help="rows inserted after the peer's snapshot (default 200k)")  # fmt: skip
    a = p.parse_args(argv)
    a.databases = [d.strip() for d in a.databases.split(",") if d.strip()]
    bad = set(a.databases) - {"postgresql", "mariadb"}
    if bad:
        p.error(f"unknown database(s): {', '.join(sorted(bad))}")
    if a.rows < 1 or a.repeat < 1 or a.e2e_repeat < 1:
        p.error("--rows, --repeat and --e2e-repeat must be >= 1")
    return a


def _medians(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in runs for k in r}
    return {k: statistics.median(r.get(k, math.nan) for r in runs) for k in sorted(keys)}


def _tracked(cpu: dict[str, float] | None) -> float:
    """Core-seconds of the client and the services (not other users' load); 0 if unknown."""
    if not cpu:
        return 0.0
    values = [v for k, v in cpu.items() if k != "other"]
    return 0.0 if any(math.isnan(v) for v in values) else sum(values)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.schema = load_schema("customers")
        self.errors: list[str] = []
        kafka_port = int(e2e.BOOTSTRAP.rsplit(":", 1)[1])
        self.meter = CpuMeter({**dataset.service_ports(), "kafka": kafka_port})
        self.baseline: tuple[Path, str] | None = None
        if args.baseline:
            self.baseline = baseline.checkout(e2e.REPO_ROOT, args.baseline)

    def part(self, db: str, what: str, fn: Callable[[], T]) -> T | None:
        """Run one measurement; a failure is recorded (exit code 1) and the run goes on."""
        log.info("%s: %s", db, what)
        try:
            return fn()
        except Exception as exc:
            log.error("%s: %s failed: %s", db, what, exc)
            log.debug("%s", traceback.format_exc())
            self.errors.append(f"{db}: {what}: {exc}")
            return None

    def rates(self, db: str, out: dict[str, Any], name: str,
              fn: Callable[[], tuple[int, float]], unit: str = "rows") -> None:  # fmt: skip
        """Run fn (-> rows, seconds) --repeat times: the median rate as `<name>_<unit>_per_s`,
        each run's rate, and CPU core-seconds per 1M rows by component (medians)."""

        def runs() -> None:
            rates, cpu = [], []
            for _ in range(self.args.repeat):
                before = self.meter.read()
                rows, secs = fn()
                cpu.append(per_million(self.meter.delta(before, self.meter.read()), rows))
                if rows != self.args.rows:
                    raise RuntimeError(f"{name} saw {rows} rows, expected {self.args.rows}")
                rates.append(rows / secs)
            out[f"{name}_runs"] = rates
            out[f"{name}_{unit}_per_s"] = statistics.median(rates)
            out["cpu_s_per_1m_rows"][name] = _medians(cpu)

        self.part(db, name.replace("_", " "), runs)

    def database(self, db: str) -> dict[str, Any]:
        a, n, r = self.args, self.args.rows, self.args.repeat
        out: dict[str, Any] = {"rows": n, "cpu_s_per_1m_rows": {}}
        engine = dataset.ensure_database(db)
        try:
            secs = dataset.ensure_table(engine, db, "customers", n)
            if not a.skip_5x and not a.skip_e2e:
                secs += dataset.ensure_table(engine, db, "customers_x5", 5 * n)
        finally:
            engine.dispose()
        log.info("%s: table ready (%s)", db, f"generated in {secs:.0f} s" if secs else "reused")
        cfg = e2e.app_config(e2e.poller_config(db, "customers"))
        # The poller's own driver (MariaDB: mysqlclient when installed) for the raw baselines.
        url = with_driver(make_url(cfg.source.url)).render_as_string(False)

        eng = make_engine(cfg.source)
        try:
            sql, params = raw.full_select(raw.entity_query(cfg, self.schema, eng), eng)
        finally:
            eng.dispose()
        self.rates(db, out, "raw_fetch", lambda: raw.raw_fetch(url, sql, params))
        if db == "postgresql":
            copy_bytes: list[int] = []

            def copy() -> tuple[int, float]:
                rows, secs, size = raw.raw_copy(url, sql, params)
                copy_bytes.append(size)
                return rows, secs

            self.rates(db, out, "raw_copy", copy)
            if copy_bytes:  # the COPY stream's bytes per row (binary tuples, as the path reads)
                out["raw_copy_bytes_per_row"] = statistics.median(copy_bytes) / n
        sample: list[Sequence[object]] = []

        def reader() -> tuple[int, float]:
            rows, secs, kept = raw.reader_fetch(cfg, self.schema, keep=a.sample - len(sample))
            sample.extend(kept)
            return rows, secs

        self.rates(db, out, "reader_fetch", reader)
        enc = self.part(db, "encode", lambda: raw.encode(self.schema, sample, cfg.tenant, r))
        if enc is not None:
            out["encode_rows_per_s"] = statistics.median(enc.ours_rows_per_s)
            out["fastavro_rows_per_s"] = statistics.median(enc.fastavro_rows_per_s)
            out["encode_runs"] = enc.ours_rows_per_s
            out["fastavro_runs"] = enc.fastavro_rows_per_s
            out["encode_rows_passed"] = enc.rows_passed
            out["avg_payload_bytes"] = enc.avg_payload_bytes
            out["cpu_s_per_1m_rows"]["encode"] = {"client": 1e6 / out["encode_rows_per_s"]}
            p, k = enc.payloads, enc.keys

            def producer(every: int) -> Callable[[], tuple[int, float]]:
                return lambda: (n, raw.raw_produce(e2e.BOOTSTRAP, self.schema, cfg.tenant, p, k,
                                                   n, every))  # fmt: skip

            self.rates(db, out, "raw_produce", producer(0), "msgs")
            self.rates(db, out, "raw_produce_txn", producer(TXN_EVERY), "msgs")
            txn, plain = out.get("raw_produce_txn_msgs_per_s"), out.get("raw_produce_msgs_per_s")
            if txn and plain:  # extra seconds per transaction of TXN_EVERY messages
                out["txn_cost_ms"] = 1000 * (1 / txn - 1 / plain) * TXN_EVERY
        cpu = out["cpu_s_per_1m_rows"]
        parts = [_tracked(cpu.get(k)) for k in ("raw_fetch", "encode", "raw_produce_txn")]
        if all(parts):  # every core busy with just these three parts' work (others' excluded)
            out["cpu_bound_ceiling_rows_per_s"] = (os.cpu_count() or 1) * 1e6 / sum(parts)
        if not a.skip_e2e:
            self.end_to_end(db, out)
        if not a.skip_e2e and not a.skip_verify:
            found = self.part(db, "verify", lambda: verify.measure(db, n))
            if found is not None:
                out.update(found)
        return out

    def end_to_end(self, db: str, out: dict[str, Any]) -> None:
        n = self.args.rows

        cpu: list[dict[str, float]] = []

        # PostgreSQL with the accelerator installed: the default runs take the native path, and
        # the Python path (POLLER_NATIVE=0) runs in turn with them, so both see the same load.
        native = db == "postgresql" and native_pg.available()
        if db == "postgresql" and not native:  # the native figures are part of every run
            self.errors.append(f"{db}: native path: {native_pg.why_off()}")
        python: list[e2e.E2EResult] = []
        # MariaDB with mysqlclient installed: the default runs take it (mysql:// URLs), and
        # PyMySQL's runs (mysql+pymysql, the fallback) alternate with them.
        fast_mysql = db == "mariadb" and mysqlclient_installed()
        pymysql: list[e2e.E2EResult] = []

        base = self.baseline

        def run(
            table: str, rows: int, batch: int, fmt: str = "single_object", path: str = ""
        ) -> e2e.E2EResult:
            before = self.meter.read()
            env = {"POLLER_NATIVE": "0"} if path == "python" else None
            tree = None
            if path == "baseline" and base is not None:
                tree, env = base[0], baseline.environment(base[0])
            # The baseline reads MariaDB with PyMySQL, the driver releases before had.
            driver = "pymysql" if path in ("pymysql", "baseline") else None
            raw_cfg = e2e.poller_config(db, table, batch, fmt=fmt, driver=driver)
            measure = path in ("native", "python", "baseline")
            res = e2e.run_poller(raw_cfg, env=env, measure_bytes=measure, tree=tree)
            if table == "customers" and batch == 10_000 and fmt == "single_object":
                cpu.append(per_million(self.meter.delta(before, self.meter.read()), rows))
            if res.rows != rows:
                raise RuntimeError(f"poller published {res.rows} rows, expected {rows}")
            log.info(
                "%s: %s %s batch %d%s: %.1f s copy, %.1f s wall, %.1f s CPU, %.0f MB peak RSS",
                db, table, fmt, batch, f" ({path} path)" if path else "", res.copy_s, res.wall_s,
                res.cpu_s, res.peak_rss_mb,
            )  # fmt: skip
            return res

        confluent: list[e2e.E2EResult] = []
        before: list[e2e.E2EResult] = []  # the --baseline revision, Python path

        def ones() -> list[e2e.E2EResult]:
            # Both wire formats in turn, so load from other processes hits both alike.
            single = []
            for _ in range(self.args.e2e_repeat):
                single.append(run("customers", n, 10_000, path="native" if native else ""))
                if native:
                    python.append(run("customers", n, 10_000, path="python"))
                if fast_mysql:
                    pymysql.append(run("customers", n, 10_000, path="pymysql"))
                if base is not None:
                    before.append(run("customers", n, 10_000, path="baseline"))
                if not self.args.skip_confluent:
                    confluent.append(run("customers", n, 10_000, "confluent"))
            return single

        runs = self.part(db, "end to end", ones)
        if confluent:
            rate = n / statistics.median(x.copy_s for x in confluent)
            out["end_to_end_confluent_runs"] = [vars(x) for x in confluent]
            out["end_to_end_confluent_rows_per_s"] = rate
            if runs:
                single_rate = n / statistics.median(x.copy_s for x in runs)
                out["confluent_to_single_object"] = rate / single_rate
        if runs and native:
            out["native"] = _path_figures(n, runs)
        if python:
            out["python"] = _path_figures(n, python)
        if runs and pymysql:
            out["mysqlclient"] = _path_figures(n, runs)
            out["pymysql"] = _path_figures(n, pymysql)
            fast, slow = out["mysqlclient"], out["pymysql"]
            out["mysqlclient_to_pymysql"] = (
                fast["end_to_end_rows_per_s"] / slow["end_to_end_rows_per_s"]
            )
        if before and base is not None:
            # The same path of this tree: Python on PostgreSQL, PyMySQL on MariaDB.
            ours = python or pymysql or (runs if not native else None)
            out["baseline"] = {"ref": self.args.baseline, "commit": base[1],
                               **_path_figures(n, before)}  # fmt: skip
            if ours:
                figures = _path_figures(n, ours)
                out["python_to_baseline"] = (
                    figures["end_to_end_rows_per_s"] / out["baseline"]["end_to_end_rows_per_s"]
                )
                out["python_cpu_to_baseline"] = (
                    figures["poller_cpu_s"] / out["baseline"]["poller_cpu_s"]
                )
        if runs and python and out.get("raw_copy_rows_per_s"):
            out["native_to_python"] = (
                n
                / statistics.median(x.copy_s for x in runs)
                / (n / statistics.median(x.copy_s for x in python))
            )
            out["native_to_raw_copy"] = (
                out["native"]["end_to_end_rows_per_s"] / (out["raw_copy_rows_per_s"])
            )
        if runs:
            copy = statistics.median(x.copy_s for x in runs)
            out["end_to_end_runs"] = [vars(x) for x in runs]
            out["end_to_end_rows_per_s"] = n / copy
            out["end_to_end_wall_rows_per_s"] = n / statistics.median(x.wall_s for x in runs)
            out["startup_s"] = statistics.median(x.startup_s for x in runs)
            out["peak_rss_mb"] = max(x.peak_rss_mb for x in runs)
            out["poller_cpu_per_wall"] = statistics.median(x.cpu_s / x.wall_s for x in runs)
            out["cpu_s_per_1m_rows"]["end_to_end"] = _medians(cpu)
            if out.get("raw_fetch_rows_per_s"):
                out["ratio_to_raw_fetch"] = (
                    out["end_to_end_rows_per_s"] / out["raw_fetch_rows_per_s"]
                )
            big = self.part(db, "end to end, batch 100000", lambda: run("customers", n, 100_000))
            if big is not None:
                out["end_to_end_rows_per_s_batch_100k"] = n / big.copy_s
                out["peak_rss_mb_batch_100k"] = big.peak_rss_mb
            if out.get("txn_cost_ms"):  # the poller commits once per 10,000 rows here
                out["txn_share"] = out["txn_cost_ms"] / 1000 * (n / TXN_EVERY) / copy
        if not self.args.skip_5x:
            five = self.part(db, "end to end, 5x rows", lambda: run("customers_x5", 5 * n, 10_000))
            if five is not None:
                out["peak_rss_mb_5x"] = five.peak_rss_mb
                out["end_to_end_rows_per_s_5x"] = 5 * n / five.copy_s


def _path_figures(n: int, runs: Sequence[e2e.E2EResult]) -> dict[str, Any]:
    """One path's end-to-end figures (medians): rows/s, the poller's CPU seconds (also per 1M
    rows), peak RSS, and bytes per record on the broker."""
    sizes = [x.bytes_per_record for x in runs]
    cpu = statistics.median(x.cpu_s for x in runs)
    return {
        "end_to_end_rows_per_s": n / statistics.median(x.copy_s for x in runs),
        "poller_cpu_s": cpu,
        "poller_cpu_s_per_1m_rows": cpu * 1e6 / n,
        "peak_rss_mb": max(x.peak_rss_mb for x in runs),
        "bytes_per_record": None if None in sizes else statistics.median(s for s in sizes if s),
        "runs": [{**vars(x), "bytes_per_record": x.bytes_per_record} for x in runs],
    }


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = _args(argv)
    if args.peer_only:
        return peer_compare.run_only(args, e2e.BOOTSTRAP, e2e.REGISTRY)
    bench = Bench(args)
    t0 = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    for db in args.databases:
        try:
            results[db] = bench.database(db)
        except Exception as exc:  # the table could not be made: nothing else to measure
            log.error("%s: %s", db, exc)
            bench.errors.append(f"{db}: {exc}")
    if args.peer:  # the same --rows, medians of --e2e-repeat alternated runs per tool
        peer = bench.part(
            "postgresql",
            f"peer {args.peer}",
            lambda: peer_compare.measure(
                args.rows, args.peer_catch_up, args.e2e_repeat, e2e.BOOTSTRAP, e2e.REGISTRY
            ),
        )
        if peer is not None:
            results.setdefault("postgresql", {})["peer"] = peer
            print(peer_compare.table(peer))
    engines = {db: dataset.ensure_database(db) for db in args.databases}
    try:
        machine = report.machine(engines)
    finally:
        for eng in engines.values():
            eng.dispose()
    for db, key in report.missing_figures(results, args):  # a figure left out failed
        bench.errors.append(f"{db}: figure {key} was not measured")
    bench.errors += report.wrong_answers(results)
    targets = report.check_targets(results)
    report.print_table(results, targets, args.rows, args.repeat, args.e2e_repeat)
    path = report.write_json({
        "args": {k: v for k, v in vars(args).items()},
        "elapsed_s": round(time.monotonic() - t0, 1),
        "machine": machine,
        "databases": results,
        "targets": targets,
        "errors": bench.errors,
    })  # fmt: skip
    print(f"\nwritten: {path}")
    for err in bench.errors:
        print(f"error: {err}", file=sys.stderr)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())
