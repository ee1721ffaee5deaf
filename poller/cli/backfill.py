"""`poller backfill`: publish a range of an entity's rows again, resumably, without moving the
live watermark."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType

from poller.cli.common import load
from poller.errors import FencedError

log = logging.getLogger("poller")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser(
        "backfill",
        help="publish a range of an entity's rows again (resumable; the live watermark stays)",
    )
    b.add_argument("--config", required=True, help="the poller's YAML configuration file")
    b.add_argument("--entity", required=True, help="the configured entity to backfill")
    b.add_argument(
        "--from",
        dest="low",
        required=True,
        help="first cursor value (or key, with --by key) of the range, inclusive",
    )
    b.add_argument(
        "--to",
        dest="high",
        required=True,
        help="last cursor value (or key) of the range, inclusive",
    )
    b.add_argument(
        "--by",
        choices=("cursor", "key"),
        default="cursor",
        help="range over the batching column (default) or over the key column",
    )
    b.add_argument(
        "--where",
        default=None,
        help='an extra SQL condition on the entity\'s own row, e.g. "store_id = 7": one '
        "expression, no subquery, no comment; test-run before it is stored (docs/keyset.md)",
    )
    b.add_argument(
        "--queue",
        action="store_true",
        help="only record the request: the next poller started for this tenant interleaves it "
        "with its live batches",
    )
    b.add_argument(
        "--replace",
        action="store_true",
        help="abandon a pending backfill of this entity with another range",
    )
    b.set_defaults(func=cmd_backfill)


def cmd_backfill(args: argparse.Namespace) -> int:
    from poller.cli import progress
    from poller.pipeline.backfill import Backfiller, new_request
    from poller.source.limits import SourceLimits
    from poller.source.reader import make_engine

    cfg = load(args)
    engine = make_engine(cfg.source)
    request = new_request(
        cfg, args.entity, args.by, args.low, args.high, args.where, engine.dialect.name
    )
    stop = threading.Event()
    source_limits = SourceLimits(cfg.source, stop)  # max_rows_per_second holds here too
    backfiller = Backfiller(cfg, engine, source_limits=source_limits)
    try:
        state = backfiller.submit(request, replace=args.replace)
        if state is not request:
            print(f"resuming the backfill of {state.describe()} after {state.rows:,} rows")
        if args.queue:
            print(
                f"queued the backfill of {state.describe()}: a poller started for tenant "
                f"{cfg.tenant} interleaves it with its live batches"
            )
            return 0

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %d: stopping after the current batch; run the same command to "
                     "resume", signum)  # fmt: skip
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        if progress.wanted(cfg):
            bar = progress.make_progress()
            total = backfiller.estimate(state.entity)
            task = bar.add_task(f"backfill {state.entity}", total=total, completed=state.rows)
            backfiller.on_batch = lambda _entity, n: bar.advance(task, n)
            with progress.log_above(bar):
                backfiller.run(stop.is_set)
                if backfiller.states[state.entity].done:
                    done_rows = backfiller.states[state.entity].rows
                    bar.update(task, total=done_rows, completed=done_rows)
        else:
            backfiller.run(stop.is_set)
        done = backfiller.states[state.entity]
        if backfiller.fenced is not None:
            raise FencedError(
                f"another runner of tenant {cfg.tenant}'s backfills took this one over after "
                f"{done.rows:,} rows (a poller started with it pending, or another `poller "
                "backfill`); it goes on from there"
            ) from backfiller.fenced
        if not done.done:
            print(f"stopped: {done.rows:,} rows so far; run the same command to resume")
            return 0
        print(f"backfill of {done.describe()} done: {done.rows:,} rows published again")
        return 0
    finally:
        backfiller.close()
        source_limits.close()
        engine.dispose()
