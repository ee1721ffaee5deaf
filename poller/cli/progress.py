"""Progress bars for `run --once` and `backfill` on a terminal: one per entity with rows,
rows/s and an ETA from a cheap row-count estimate. Not shown when stderr is not a terminal
or logs are JSON (a log collector wants lines, not cursor movement)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from poller.config import AppConfig
    from poller.pipeline.runner import Poller


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- rows/s" if speed is None else f"{speed:,.0f} rows/s", style="cyan")


def wanted(cfg: AppConfig) -> bool:
    return cfg.logging.format != "json" and sys.stderr.isatty()


def make_progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        RateColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


@contextmanager
def log_above(progress: Progress) -> Iterator[None]:
    """Log lines go above the bars instead of through them."""
    with progress:
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
        old = [h.setStream(sys.stderr) for h in handlers]  # rich's redirected stderr
        try:
            yield
        finally:
            for h, stream in zip(handlers, old, strict=True):
                if stream is not None:
                    h.setStream(stream)


class RunProgress:
    """The run loop's observer (`Poller.observer`): a bar per entity, its total the estimated
    rows after the watermark at start."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def started(self, poller: Poller) -> None:
        from poller.source.estimate import estimate_remaining
        from poller.source.query import EntityQuery

        for name, stream in poller.streams.items():
            if name in self.tasks:
                continue
            query = EntityQuery(
                stream.cfg,
                poller.cfg.source,
                poller.tenant,
                stream.schema.field_names,
                poller.engine.dialect,
                name=name,
            )
            total = estimate_remaining(poller.engine, query, stream.position)
            self.tasks[name] = self.progress.add_task(name, total=total)

    def committed(self, entity: str, rows: int) -> None:
        task = self.tasks.get(entity)
        if task is not None:
            self.progress.advance(task, rows)

    def caught_up(self, entity: str) -> None:
        task = self.tasks.get(entity)
        if task is not None:
            done = self.progress.tasks[task].completed
            self.progress.update(task, total=done, completed=done)
