"""`poller status`: one line per entity: mode, watermark, rows so far, last commit, lag,
horizon/settle, backfill, and whether a poller of this tenant is running now."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from poller.cli.common import load, unsettled_note
from poller.config import AppConfig, EntityConfig, Mode
from poller.errors import PollerError
from poller.kafka import watermark
from poller.kafka.backfill_state import BackfillState, observe
from poller.ops.running import Liveness, poller_running
from poller.source.horizon import HorizonAccess


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = sub.add_parser(
        "status",
        help="one line per entity: watermark, rows, lag, backfill; is a poller running now",
    )
    s.add_argument("--config", required=True, help="the poller's YAML configuration file")
    s.add_argument("--json", action="store_true", help="print a JSON object instead of a table")
    s.set_defaults(func=cmd_status)


def iso(value: dt.datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z and microseconds."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(max(0.0, seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 172800:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


CAUGHT_UP = "caught up"


def horizon_text(ent: EntityConfig, probe: SourceProbe) -> str:
    """What keeps late commits out: the transaction horizon (if this database user can see
    open transactions) and the settle delay in force."""
    active = probe.horizon_active("id" if ent.batching.mode is Mode.ID else "time")
    settle = f"settle {ent.settle_s(bool(active)):g}s"
    if active is None:
        return f"{settle} (horizon unknown)"
    return f"transactions, {settle}" if active else settle


def _utc(value: object) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class SourceProbe:
    """Database time and newest ids, for the lag; a database that does not answer leaves the
    lag unknown instead of failing the command."""

    def __init__(self, cfg: AppConfig) -> None:
        from poller.avro.schemas import load_schema
        from poller.source.query import EntityQuery
        from poller.source.reader import SourceReader, make_engine

        self.cfg = cfg
        self.engine = make_engine(cfg.source)
        self.readers = {
            name: SourceReader(
                self.engine,
                EntityQuery(
                    ent,
                    cfg.source,
                    cfg.tenant,
                    load_schema(name).field_names,
                    self.engine.dialect,
                    name=name,
                ),
                ent,
                cfg.source,
            )
            for name, ent in cfg.enabled_entities().items()
        }
        self.error: str | None = None
        self._now: dt.datetime | None = None
        self._access: HorizonAccess | None = None

    def horizon_active(self, family: str) -> bool | None:
        """Whether the transaction horizon works for the cursor family; None: unknown."""
        if self._access is None and self.error is None:
            access = HorizonAccess(self.cfg.source.horizon, self.engine.dialect.name)
            try:
                with self.engine.connect() as conn:
                    access.probe(conn)
            except sa.exc.SQLAlchemyError as exc:
                self.error = f"database {self.cfg.source.safe_url}: {type(exc).__name__}"
                return None
            self._access = access
        return None if self._access is None else self._access.active(family)

    def now_utc(self) -> dt.datetime | None:
        """The database's current time (UTC)."""
        if self._now is None and self.error is None and self.readers:
            import zoneinfo

            try:
                local = next(iter(self.readers.values())).db_now()
            except PollerError as exc:
                self.error = str(exc)
                return None
            assert isinstance(local, dt.datetime)
            zone = zoneinfo.ZoneInfo(self.cfg.source.timezone)
            self._now = local.replace(tzinfo=zone).astimezone(dt.UTC)
        return self._now

    def max_cursor(self, entity: str) -> object:
        if self.error is not None or entity not in self.readers:
            return None
        try:
            return self.readers[entity].max_cursor()
        except PollerError as exc:
            self.error = str(exc)
            return None

    def close(self) -> None:
        self.engine.dispose()


def entity_rows(cfg: AppConfig) -> tuple[list[dict[str, Any]], Liveness, str | None]:
    import zoneinfo

    topic = cfg.kafka.watermark_topic_name(cfg.tenant)
    stored = observe(cfg.kafka, topic, cfg.tenant)
    running = poller_running(cfg, [w.updated_at for w in stored.watermarks.values()])
    zone = zoneinfo.ZoneInfo(cfg.source.timezone)
    probe = SourceProbe(cfg)
    rows: list[dict[str, Any]] = []
    try:
        for name, ent in cfg.entities.items():
            wm = stored.watermarks.get(name)
            secs, ids, lag_text = _lag(name, ent, wm, probe, zone)
            bf = stored.backfills.get(name)
            rows.append(
                {
                    "entity": name,
                    "enabled": ent.enabled,
                    "mode": ent.batching.mode.value,
                    "cursor": None if wm is None else wm.position.cursor,
                    # A newer watermark lies in a transaction that has not ended (see observe).
                    "watermark_unsettled": name in stored.unsettled_watermarks,
                    "key": None if wm is None else wm.position.key,
                    "rows_total": wm.rows_total if wm else 0,
                    "last_commit": iso(wm.updated_at) if wm else None,
                    "heartbeat_at": iso(_utc(wm.heartbeat_at)) if wm else None,
                    "lag_seconds": secs,
                    "lag_ids": ids,
                    "lag": lag_text,
                    "horizon": horizon_text(ent, probe),
                    "backfill": None if bf is None else backfill_json(bf),
                    "running": running.running,
                }
            )
    finally:
        probe.close()
    return rows, running, probe.error


def _lag(
    name: str,
    ent: EntityConfig,
    wm: watermark.Watermark | None,
    probe: SourceProbe,
    zone: dt.tzinfo,
) -> tuple[float | None, int | None, str]:
    if not ent.enabled:
        return None, None, "disabled"
    now = probe.now_utc()
    if wm is not None and wm.heartbeat_at is not None and now is not None:
        beat = _utc(wm.heartbeat_at)
        assert beat is not None
        secs = (now - beat).total_seconds()
        return secs, None, f"caught up {duration(secs)} ago"
    cursor = None if wm is None else wm.position.cursor
    if ent.batching.mode is Mode.ID:
        newest = probe.max_cursor(name)
        if isinstance(newest, int) and not isinstance(newest, bool):
            behind = max(0, newest - (cursor if isinstance(cursor, int) else 0))
            return None, behind, CAUGHT_UP if behind == 0 else f"{behind:,} ids"
        return None, None, "-"
    if isinstance(cursor, str):
        try:
            cursor = dt.datetime.fromisoformat(cursor)
        except ValueError:
            cursor = None
    if isinstance(cursor, dt.datetime) and now is not None:
        aware = cursor if cursor.tzinfo is not None else cursor.replace(tzinfo=zone)
        newest = probe.max_cursor(name)
        if isinstance(newest, dt.date) and not isinstance(newest, dt.datetime):
            newest = dt.datetime.combine(newest, dt.time())
        if isinstance(newest, dt.datetime):
            newest_aware = newest if newest.tzinfo is not None else newest.replace(tzinfo=zone)
            if newest_aware <= aware:  # nothing newer than the watermark: no lag to show
                return 0.0, None, CAUGHT_UP
        secs = (now - aware.astimezone(dt.UTC)).total_seconds()
        return secs, None, duration(secs)
    return None, None, "-"


def backfill_json(bf: BackfillState) -> dict[str, Any]:
    return {
        "state": "failed" if bf.error else "done" if bf.done else "pending",
        "error": bf.error,
        "by": bf.by,
        "from": bf.low,
        "to": bf.high,
        "where": bf.where,
        "rows": bf.rows,
        "at_cursor": bf.position.cursor,
        "at_key": bf.position.key,
        "updated_at": iso(bf.updated_at),
    }


def backfill_text(bf: dict[str, Any] | None) -> str:
    if bf is None:
        return "-"
    text = f"{bf['state']} {bf['from']}..{bf['to']}: {bf['rows']:,} rows"
    return text + (f" ({bf['error']})" if bf.get("error") else "")


def cmd_status(args: argparse.Namespace) -> int:
    cfg = load(args)
    rows, running, db_error = entity_rows(cfg)
    if args.json:
        out = {
            "tenant": cfg.tenant,
            "running": running.running,
            "running_evidence": running.evidence,
            "database_error": db_error,
            "entities": rows,
        }
        print(json.dumps(out, default=str, ensure_ascii=False))
        return 0
    console = Console(width=None if sys.stdout.isatty() else 200, soft_wrap=False)
    console.print(f"tenant [bold]{cfg.tenant}[/bold]: poller {running}", highlight=False)
    if db_error:
        console.print(f"lag unknown: {db_error}", style="yellow", highlight=False)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("ENTITY", "MODE", "WATERMARK", "ROWS", "LAST COMMIT", "LAG", "HORIZON", "BACKFILL"):
        table.add_column(col, justify="right" if col == "ROWS" else "left", no_wrap=True)
    for r in rows:
        mark = "earliest (nothing stored)" if r["last_commit"] is None else _position(r)
        mark += " *" if r["watermark_unsettled"] else ""
        table.add_row(
            r["entity"],
            r["mode"],
            mark,
            f"{r['rows_total']:,}",
            r["last_commit"] or "-",
            r["lag"],
            r["horizon"],
            backfill_text(r["backfill"]),
        )
    console.print(table, highlight=False)
    unsettled = [r["entity"] for r in rows if r["watermark_unsettled"]]
    if unsettled:
        console.print(unsettled_note(cfg, unsettled), style="yellow", highlight=False)
    return 0


def _position(r: dict[str, Any]) -> str:
    if r["cursor"] is None:
        return "earliest"
    same = r["key"] is None or r["key"] == r["cursor"]
    return str(r["cursor"]) if same else f"{r['cursor']} / {r['key']}"
