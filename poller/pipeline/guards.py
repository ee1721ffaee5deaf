"""Checks that keep the run loop honest about its position: a stored watermark that no longer
fits the configuration, a batch that does not move forward, NULL cursors, and start positions
typed by the operator that must be read in the column's terms."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Mapping

import sqlalchemy as sa

from poller.batch import Batch, Position
from poller.config import AppConfig, EntityConfig, Mode, SourceConfig
from poller.errors import ConfigError
from poller.kafka.watermark import Watermark
from poller.ops.entity_metrics import TenantMetrics
from poller.source.exact import CursorType
from poller.source.horizon import HorizonAccess
from poller.source.keyset import ensure_progress as keyset_progress
from poller.source.probe import count_null_cursors, nullable_cursor
from poller.source.query import EntityQuery
from poller.source.reader import SourceReader, source_connection

log = logging.getLogger(__name__)


def watermark_columns(ent: EntityConfig) -> list[str]:
    """The columns a watermark's position is made of: the cursor, then the tie-breaker(s)."""
    return [ent.batching.column, *ent.tiebreak_columns]


def stored_mismatches(cfg: AppConfig, stored: Mapping[str, Watermark], config_path: str) -> None:
    """A stored watermark written for another mode or other columns cannot be resumed: its
    cursor would be compared with a different column (publishing nothing, or skipping rows).
    Raises ConfigError (exit 2) with the command that moves it on purpose."""
    problems = []
    for name, ent in cfg.enabled_entities().items():
        wm = stored.get(name)
        if wm is None or (wm.position.cursor is None and wm.columns is None):
            continue
        mode = ent.batching.mode.value
        cols = watermark_columns(ent)
        wrong_kind = _cursor_kind_mismatch(ent.batching.mode, wm.position.cursor)
        if wm.mode == mode and (wm.columns is None or wm.columns == cols) and not wrong_kind:
            continue
        was = f"mode {wm.mode}" + (f" on {', '.join(wm.columns)}" if wm.columns else "")
        problems.append(
            f"entities.{name}: the stored watermark ({was}, cursor {wm.position.cursor!r}) does "
            f"not fit the configuration (mode {mode} on {', '.join(cols)}). Check where the "
            f"copy should resume, then run: poller watermarks reset --config {config_path} "
            f"--entity {name} --to earliest   (or --to <cursor value>)"
        )
    if problems:
        raise ConfigError(problems, "the stored watermarks")


def _cursor_kind_mismatch(mode: Mode, cursor: object) -> bool:
    if cursor is None:
        return False
    is_int = isinstance(cursor, int) and not isinstance(cursor, bool)
    if mode is Mode.ID:
        return isinstance(cursor, dt.date)
    return is_int


def ensure_progress(entity: str, start: Position, batch: Batch, batch_size: int) -> None:
    """The keyset API's progress guard (source/keyset.py), on a live batch."""
    keyset_progress(f"entity {entity!r}", start, batch.last, len(batch.rows), batch_size)


def null_cursor_problems(
    conn: sa.Connection, query: EntityQuery, entity: EntityConfig, what: str
) -> list[str]:
    """A nullable cursor column: rows with a NULL cursor are never read. Refused unless the
    entity says `null_cursor: skip` (then they are counted in a metric)."""
    if entity.null_cursor == "skip":
        return []
    column = entity.batching.column
    nullable = nullable_cursor(conn, entity)
    nulls = count_null_cursors(conn, query)
    if nullable is False or (nullable is None and nulls == 0):
        return []
    return [
        f"{what}: batching.column {column!r} is nullable ({nulls} row(s) of this tenant are "
        "NULL now); rows with a NULL cursor are never read. Fix: fill the NULLs and make the "
        f"column NOT NULL, or read it through a `query:` that selects "
        f"COALESCE({column}, <fallback>) AS {column}; or "
        "accept the loss with `null_cursor: skip` (skipped rows are counted in "
        "poller_null_cursor_rows)"
    ]


def entity_null_problems(engine: sa.Engine, query: EntityQuery, ent: EntityConfig) -> list[str]:
    what = f"entity {query.name!r}"
    with source_connection(engine, what, query.source) as conn:
        return null_cursor_problems(conn, query, ent, what)


def horizon_warnings(cfg: AppConfig) -> list[str]:
    """For `poller check`: what the transaction horizon lacks on this database, if anything."""
    from poller.source.reader import make_engine

    engine = make_engine(cfg.source)
    try:
        access = HorizonAccess(cfg.source.horizon, engine.dialect.name)
        return probe_horizon(engine, access, cfg.source, families_in_use(cfg))
    finally:
        engine.dispose()


def empty_tenant_warnings(cfg: AppConfig) -> list[str]:
    """For `poller check`: an entity in which the tenant has no row at all. Often right (a new
    customer), sometimes a tenant value spelled unlike the column's (case, padding, type)."""
    from poller.avro.schemas import load_schema
    from poller.source.probe import prepare
    from poller.source.reader import make_engine

    column = cfg.source.tenant_column
    if column is None:
        return []
    engine = make_engine(cfg.source)
    warnings = []
    try:
        for name, ent in cfg.enabled_entities().items():
            fields = load_schema(name).field_names
            query = EntityQuery(ent, cfg.source, cfg.tenant, fields, engine.dialect, name=name)
            what = f"entity {name!r}"
            with source_connection(engine, what, cfg.source) as conn:
                prepare(conn, query, ent)
                stmt = sa.select(sa.literal(1)).select_from(query.src)
                stmt = stmt.where(*query.tenant_filter()).limit(1)
                found = conn.execute(stmt, {"tenant": cfg.tenant}).first()
            if found is None:
                warnings.append(
                    f"{what}: tenant {cfg.tenant!r} has 0 rows (source.tenant_column "
                    f"{column!r}); if rows are expected, check how the tenant value is written "
                    "in the column (case, trailing spaces, type)"
                )
    finally:
        engine.dispose()
    return warnings


def count_skipped(engine: sa.Engine, query: EntityQuery) -> int:
    with source_connection(engine, f"entity {query.name!r}", query.source) as conn:
        return count_null_cursors(conn, query)


def families_in_use(cfg: AppConfig) -> set[str]:
    """The cursor families ("time", "id") of the enabled entities."""
    return {"time" if e.is_time_mode else "id" for e in cfg.enabled_entities().values()}


def probe_horizon(
    engine: sa.Engine,
    access: HorizonAccess,
    source: SourceConfig,
    families: set[str] | None = None,
) -> list[str]:
    """Find out once whether open transactions are visible; the warnings say what is missing
    for the cursor families in use (default: both)."""
    with source_connection(engine, "the transaction horizon", source) as conn:
        access.probe(conn)
    return access.warnings(families)


def start_checks(
    cfg: AppConfig,
    engine: sa.Engine,
    access: HorizonAccess,
    queries: Mapping[str, EntityQuery],
    meters: TenantMetrics,
) -> None:
    """At start: whether the horizon works (a warning per missing privilege), and how many
    rows `null_cursor: skip` leaves out."""
    for warning in probe_horizon(engine, access, cfg.source, families_in_use(cfg)):
        log.warning("%s", warning, extra={"tenant": cfg.tenant})
    for name, ent in cfg.enabled_entities().items():
        family = "time" if ent.is_time_mode else "id"
        meters.entity(name).horizon_checked(access.active(family))
        if ent.null_cursor == "skip":
            skipped = count_skipped(engine, queries[name])
            meters.entity(name).null_cursors_skipped(skipped)
            if skipped:
                log.warning(
                    "%s/%s: %d row(s) with a NULL %s are skipped (null_cursor: skip)",
                    cfg.tenant,
                    name,
                    skipped,
                    ent.batching.column,
                    extra={"tenant": cfg.tenant, "entity": name},
                )


def fit_position(position: Position, reader: SourceReader, zone: str) -> Position:
    """A stored or configured start in the cursor column's terms (see fit_start)."""
    if not isinstance(position.cursor, dt.datetime):
        return position
    fitted = fit_start(position.cursor, reader.cursor_type(), zone)
    return position if fitted is position.cursor else Position(fitted, position.key)


def fit_start(value: object, ctype: CursorType, zone: str) -> object:
    """An operator's start / reset value in the column's terms: a naive timestamp on a
    zone-aware column is wall-clock time in source.timezone (comparing naive with aware would
    fail on every restart); a timestamp on a DATE column is its day."""
    if not isinstance(value, dt.datetime):
        return value
    if ctype.aware and value.tzinfo is None:
        return value.replace(tzinfo=zoneinfo.ZoneInfo(zone))
    if not ctype.aware and value.tzinfo is not None:
        return value.astimezone(zoneinfo.ZoneInfo(zone)).replace(tzinfo=None)
    return value
