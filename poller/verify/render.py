"""How a verify is shown: plain text or one JSON document on stdout, and a rich progress bar
on a terminal (stderr)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from poller.verify.compare import KINDS, Difference
from poller.verify.session import EntityReport
from poller.verify.session import Progress as NoProgress


class RichProgress(NoProgress):
    """One bar per phase (topic, source, repair), on stderr, gone when done."""

    def __init__(self) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task: TaskID | None = None
        self._entity = ""

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.stop()

    def phase(self, entity: str, what: str, total: int | None) -> None:
        self._entity = entity or self._entity
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(f"{self._entity}: {what}", total=total)

    def update(self, done: int) -> None:
        if self._task is not None:
            self._bar.update(self._task, completed=done)

    def advance(self, n: int) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)


def plain_key(key: object) -> object:
    """A key as JSON can show it: bytes as hex (never Python's b'...' repr), a composite key
    as a list; other values as json.dumps(default=str) shows them."""
    if isinstance(key, tuple):
        return [plain_key(v) for v in key]
    if isinstance(key, bytes | bytearray | memoryview):
        return bytes(key).hex()
    return key


def _key(d: Difference) -> str:
    shown = plain_key(d.key)
    return ", ".join(map(str, shown)) if isinstance(shown, list) else str(shown)


def render_text(tenant: str, reports: list[EntityReport]) -> str:
    lines = [f"tenant {tenant}"]
    for r in reports:
        c = r.counts
        wm = "none" if r.watermark is None else _position(r)
        lines.append(
            f"{r.entity}: {'EQUAL' if r.equal else 'DIFFERENT'} (topic {r.topic}, watermark {wm}, "
            f"{r.seconds:.1f}s)"
        )
        lines.append(
            f"  source rows {c.source_rows:,}: compared {c.compared:,}, after the watermark "
            f"{c.pending:,}, soft-deleted {c.deleted:,}; topic keys {c.topic_keys:,} "
            f"({c.topic_messages:,} records)"
        )
        lines.append(
            f"  equal {c.equal:,}, missing {c.missing:,}, extra {c.extra:,}, "
            f"different {c.different:,}" + (f", unencodable source rows {c.bad:,}" if c.bad else "")
        )
        for kind in KINDS:
            listed = r.samples.get(kind, [])
            if not listed:
                continue
            more = getattr(c, kind) - len(listed)
            lines.append(f"  {kind}: " + ", ".join(_key(d) for d in listed)
                         + (f" (and {more:,} more)" if more > 0 else ""))  # fmt: skip
            if kind == "different":
                for d in listed:
                    for f in r.fields.get(d.raw_key, []):
                        lines.append(
                            f"    {_key(d)}.{f.field}: source {f.source!r}, topic {f.topic!r}"
                        )
        if r.repair is not None:
            p = r.repair
            lines.append(
                f"  repaired: {p.tombstones:,} tombstones, {p.republished:,} rows re-published "
                f"in {p.transactions:,} transaction{'' if p.transactions == 1 else 's'}; "
                f"{p.pending:,} left to the live poller"
                + (f", {p.bad:,} unencodable rows not repaired" if p.bad else "")
            )
    return "\n".join(lines)


def _position(r: EntityReport) -> str:
    assert r.watermark is not None
    cursor, key = r.watermark.cursor, r.watermark.key
    return str(cursor) if key is None or key == cursor else f"{cursor} / {key}"


def render_json(tenant: str, reports: list[EntityReport]) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "equal": all(r.equal for r in reports),
        "entities": {
            r.entity: {
                "equal": r.equal,
                "topic": r.topic,
                "watermark": None
                if r.watermark is None
                else {"cursor": r.watermark.cursor, "key": r.watermark.key},
                "counts": {**vars(r.counts), "differences": r.counts.differences},
                **{
                    kind: [
                        {
                            "key": plain_key(d.key),
                            **(
                                {
                                    "fields": {
                                        f.field: {"source": f.source, "topic": f.topic}
                                        for f in r.fields.get(d.raw_key, [])
                                    }
                                }
                                if kind == "different"
                                else {}
                            ),
                        }
                        for d in r.samples.get(kind, [])
                    ]
                    for kind in KINDS
                },
                "repair": None if r.repair is None else vars(r.repair),
                "seconds": round(r.seconds, 3),
            }
            for r in reports
        },
    }
