"""Where the poller's end-to-end time goes: `python -m bench.profile [--database D] [--rows N]`.

1. Phases, without a profiler: the poller runs in-process with its own Metrics; the batch phase
   histograms give the prefetch thread's fetch time and the main thread's encode+produce and
   commit time; the rest of the main thread's wall time is waiting for the prefetcher.
2. Functions: `py-spy record --gil` (PY_SPY, or py-spy on PATH: `pip install py-spy`) on
   `poller run --once`: samples of whichever thread holds the GIL, put in buckets by the poller
   frame they are under, and the hottest leaf functions.

Run `python -m bench.run` first (or with the same --rows) so the table exists.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench import dataset, e2e
from bench import raw as raw_bench
from poller.ops.metrics import Metrics
from poller.pipeline.runner import Poller

Buckets = Sequence[tuple[str, Sequence[str]]]
PUB = "poller/kafka/publisher.py"
# (bucket, frame substrings): the first bucket with a frame anywhere in a stack names it.
BUCKETS: Buckets = (
    ("fetch (prefetch thread: driver, rows)", ("fetch (poller/source/reader.py",)),
    ("commit (begin/commit_transaction)", (f"begin ({PUB}", f"commit ({PUB}")),
    ("produce (Producer.produce, poll)", (f"send ({PUB}", f"poll ({PUB}")),
    ("encode (generated Avro encoder)", ("<avro encoder", "poller/avro/values.py")),
    ("batch loop (slice, key, Position)", ("publish_batch (poller/pipeline/stream.py",)),
    ("prefetch queue hand-over", ("poller/source/prefetch.py",)),
    ("metrics/progress", ("_progress (poller/pipeline/runner.py", "poller/ops/metrics.py",
                          "poller/ops/entity_metrics.py")),
    ("start-up (imports, checks, topics)",
     ("_connect (poller/pipeline/runner.py", "<module>", "__init__")),
    ("shutdown", ("close (poller/pipeline/runner.py",)),
)  # fmt: skip


def phases(database: str, table: str, rows: int, batch: int) -> dict[str, float]:
    """Run the poller in-process; seconds per phase from its own histograms."""
    raw = e2e.poller_config(database, table, batch)
    raw["logging"] = {"format": "text", "level": "WARNING"}
    cfg = e2e.app_config(raw)
    metrics = Metrics()
    t0 = time.perf_counter()
    Poller(cfg, metrics).run(once=True)
    wall = time.perf_counter() - t0
    raw_bench.delete_topics(cfg.kafka.bootstrap_servers, e2e.topics_of(cfg))
    out = {"wall": wall}
    for fam in metrics.registry.collect():
        for s in fam.samples:
            if s.name == "poller_batch_phase_seconds_sum":
                out[s.labels["phase"]] = s.value
    out["main: not encode/commit (waiting for fetch, start-up)"] = (
        wall - out.get("encode", 0) - out.get("commit", 0)
    )
    out["rows_per_s"] = rows / wall
    return out


def _bucket(frames: Sequence[str]) -> str:
    for name, marks in BUCKETS:
        if any(m in f for f in frames for m in marks):
            return name
    return "other"


def spy(database: str, table: str, batch: int, py_spy: str, rate: int = 200) -> str:
    """py-spy the poller, sampling only the thread holding the GIL (`--gil`): the poller is
    one process, so its Python work (fetch thread included) is serialised on the GIL."""
    with tempfile.TemporaryDirectory(prefix="poller-spy-") as tmp:
        out = Path(tmp) / "stacks.txt"
        wrapper = [py_spy, "record", "--gil", "--threads", "--format", "raw", "-r", str(rate),
                   "-o", str(out), "--"]  # fmt: skip
        res = e2e.run_poller(e2e.poller_config(database, table, batch), wrapper=wrapper)
        lines = out.read_text(encoding="utf-8", errors="replace").splitlines()
    buckets: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if count.isdigit():
            frames = stack.split(";")
            buckets[_bucket(frames)] += int(count)
            leaves[frames[-1]] += int(count)
    total = sum(buckets.values())
    held = total / rate
    text = [f"GIL held {held:.1f} s of {res.wall_s:.1f} s wall ({held / res.wall_s:.0%}); "
            "share of GIL-holding samples:"]  # fmt: skip
    text += [f"  {c / total:6.1%}  {name}" for name, c in buckets.most_common()]
    text.append("hottest leaf functions (GIL held):")
    text += [f"  {c / total:6.1%}  {f}" for f, c in leaves.most_common(15)]
    return "\n".join(text)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile")
    p.add_argument("--database", default="postgresql", choices=("postgresql", "mariadb"))
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the bench table")
    p.add_argument("--batch-size", type=int, default=10_000)
    a = p.parse_args(argv)
    engine = dataset.ensure_database(a.database)
    dataset.ensure_table(engine, a.database, "customers", a.rows)
    engine.dispose()
    ph = phases(a.database, "customers", a.rows, a.batch_size)
    print(f"{a.database}, {a.rows:,} rows, batch {a.batch_size}, in-process, no profiler:")
    print(f"  wall {ph['wall']:.1f} s = {ph['rows_per_s']:,.0f} rows/s")
    for k in ("fetch", "encode", "commit"):
        print(f"  {k:<7} {ph.get(k, 0):6.1f} s  {ph.get(k, 0) / ph['wall']:6.1%} of wall")
    k = "main: not encode/commit (waiting for fetch, start-up)"
    print(f"  {k}: {ph[k]:.1f} s ({ph[k] / ph['wall']:.1%})")
    print("  (fetch runs in the prefetch thread, overlapping encode/commit in the main thread;")
    print("   encode includes Producer.produce of each row)")
    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if py_spy is None:
        print("py-spy not found (pip install py-spy, or set PY_SPY): no function profile")
        return
    print(f"\npy-spy ({py_spy}), poller run --once as a child process:")
    print(spy(a.database, "customers", a.batch_size, py_spy))


if __name__ == "__main__":
    main()
