"""A backfill request (`poller backfill --entity --by --from --to --where`) checked up front, and
the SELECT it runs through the keyset range API (source/keyset.py)."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from poller.batch import BEGINNING, Position
from poller.config import AppConfig, EntityConfig, Mode
from poller.errors import ConfigError
from poller.kafka.backfill_state import BackfillState, By
from poller.source.keyset import KeyRange, Keyset
from poller.source.query import AnySelect, EntityQuery
from poller.source.where import normalize_where


def parse_bound(text: str, by: By, mode: Mode) -> object:
    """A --from/--to value: a cursor typed like the batching column, or a key (an integer
    when it looks like one)."""
    if by == "key":
        return int(text) if re.fullmatch(r"-?\d+", text) else text
    try:
        return int(text) if mode is Mode.ID else dt.datetime.fromisoformat(text)
    except ValueError as exc:
        want = "an integer id" if mode is Mode.ID else "an ISO-8601 timestamp"
        raise ConfigError([f"--from/--to: {text!r} is not {want}"]) from exc


def check_where(sql: str | None, dialect: str) -> str | None:
    """The operator's extra condition, validated (see source/where.py); None: no condition."""
    if sql is None:
        return None
    normalize_where(sql, dialect)
    return sql.strip()


class BackfillQuery:
    """The SELECT of one backfill, through the keyset range API: the live batch's columns,
    this tenant, the range, the rows after the last one published, the operator's `--where`
    (re-validated here: a state read back from the topic is not trusted either), in range
    order, with the live path's typed binds. Build it after `probe.prepare`."""

    def __init__(self, query: EntityQuery, entity: EntityConfig, state: BackfillState) -> None:
        self.q, self.entity, self.state = query, entity, state
        if state.by == "key" and len(entity.key_columns) != 1:
            raise ConfigError([f"--by key: {query.name} has a composite key; use --by cursor"])
        dialect = query.dialect.name
        self.condition = None if state.where is None else normalize_where(state.where, dialect)
        self._by_key = query.key_keyset(entity.key_columns) if state.by == "key" else None

    @property
    def keyset(self) -> Keyset:
        """The live batches' keyset (as it is now, after `prepare`), or the key's."""
        return self._by_key or self.q.keyset

    def range(self, position: Position) -> KeyRange:
        if self.state.by == "key":  # the key is the keyset's only column
            position = BEGINNING if position.key is None else Position(position.key)
        return KeyRange(position, self.state.low, self.state.high, condition=self.condition)

    def statement(
        self, position: Position, limit: int | None = None
    ) -> tuple[AnySelect, dict[str, object]]:
        return self.q.select_range(self.range(position), self.keyset, limit)

    def probe(self) -> tuple[AnySelect, dict[str, object]]:
        """The statement run with `AND 1=0`: the database checks the condition, reads nothing."""
        stmt, params = self.statement(BEGINNING)
        # `1 = 0`, not sa.false(): SQLAlchemy folds `AND false` into a bare `WHERE false`,
        # dropping the condition it is meant to test.
        return stmt.where(sa.literal_column("1") == sa.literal_column("0")), params


def new_request(
    cfg: AppConfig,
    entity: str,
    by: By,
    low: str,
    high: str,
    where: str | None,
    dialect: str = "",
) -> BackfillState:
    """A request checked up front (the condition is also test-run by `Backfiller.submit`);
    `dialect` (SQLAlchemy's name) is the one the condition is parsed in."""
    ent = cfg.entities.get(entity)
    if ent is None or not ent.enabled:
        raise ConfigError([f"--entity: {entity!r} is not an enabled entity of the configuration"])
    lo = parse_bound(low, by, ent.batching.mode)
    hi = parse_bound(high, by, ent.batching.mode)
    problems = []
    try:
        if lo > hi:  # type: ignore[operator]
            problems.append(f"--from {low} is after --to {high}")
    except TypeError:
        problems.append(f"--from {low} and --to {high} are not of one type")
    if problems:
        raise ConfigError(problems)
    now = dt.datetime.now(dt.UTC)
    return BackfillState(
        tenant=cfg.tenant,
        entity=entity,
        by=by,
        low=lo,
        high=hi,
        where=check_where(where, dialect),
        position=BEGINNING,
        rows=0,
        done=False,
        requested_at=now,
        updated_at=now,
    )
