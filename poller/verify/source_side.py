"""The source side of a verify: the tenant's rows in pages ordered by key, each with a flag
saying whether it is past the stored watermark (not published yet, so not compared), and the
same rows looked up by key for a repair.

Pages are keyset queries (`key > :last ORDER BY key LIMIT n`, see source/keyset.py), each a
short read-only
transaction on a pooled connection, so a verify of a 10M-row table neither holds memory nor
pins old row versions on the retailer's database for its whole length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from poller.batch import Position
from poller.config import EntityConfig, SourceConfig
from poller.source.keyset import KeyRange, chunks
from poller.source.probe import prepare
from poller.source.query import AnySelect, EntityQuery
from poller.source.reader import source_connection

PAGE_ROWS = 10_000
T = TypeVar("T")
PENDING_LABEL = "_pending"


class VerifySource:
    """Reads one entity's rows for verify and repair. Row layout: the batch query's (see
    `RowLayout`), then the pending flag (1: after the watermark, not published yet)."""

    def __init__(
        self,
        engine: sa.Engine,
        query: EntityQuery,
        entity: EntityConfig,
        source: SourceConfig,
        watermark: Position | None,
    ) -> None:
        self.engine = engine
        self.query = query
        self.entity = entity
        self.source = source
        self.what = f"entity {query.name!r}"
        self.layout = query.layout
        self.n_fields = query.n_fields
        self._compiled: dict[AnySelect, Any] = {}
        with source_connection(engine, self.what, source) as conn:  # as the reader binds it
            prepare(conn, query, entity)
        # Pages and look-ups go through the keyset range API: the same typed binds as the
        # live batches, and no row values where the dialect has none (SQL Server, Oracle).
        self.keyset = query.key_keyset(entity.key_columns)
        self.composite = len(entity.key_columns) > 1
        columns: list[Any] = list(query.batch_columns())
        after, self._after_params = query.after(watermark) if watermark else (None, {})
        if watermark is None:
            pending: Any = sa.literal(1)  # nothing was published: every row is still to come
        elif after is None:
            pending = sa.literal(0)
        else:
            pending = sa.case((after, 1), else_=0)
        columns.append(pending.label(PENDING_LABEL))
        base = sa.select(*columns).select_from(query.src)
        tenant = query.tenant_filter()
        if tenant:
            base = base.where(*tenant)
        self._base = base
        order = self.keyset.order_by()
        self._first: AnySelect = base.order_by(*order).limit(PAGE_ROWS)
        next_where = self.keyset.where(KeyRange(self.keyset.position_of([0] * len(order))))
        self._next: AnySelect = base.where(*next_where).order_by(*order).limit(PAGE_ROWS)
        self._by_keys: dict[int, AnySelect] = {}
        self.max_keys = self.keyset.max_keys_per_statement(len(self._params()) + 2)

    def key(self, row: Sequence[object]) -> object:
        """The row's key: a value, or a tuple for a composite key."""
        return self.layout.message_key(row)

    def _params(self) -> dict[str, object]:
        params = dict(self._after_params)
        if self.query.source.tenant_column is not None:
            params["tenant"] = self.query.tenant
        return params

    def page_query(self, last: object) -> tuple[AnySelect, dict[str, object]]:
        """The page after key `last` (None: the first page): statement and parameters."""
        params = self._params()
        if last is not None:
            values = last if isinstance(last, tuple) else (last,)
            params.update(self.keyset.position_params(self.keyset.position_of(values)))
        return (self._first if last is None else self._next), params

    def pages(self) -> Iterator[Sequence[Sequence[object]]]:
        """Every row of the tenant, by key, a page at a time."""
        last: object = None
        while True:
            rows = self.fetch(*self.page_query(last))
            if not rows:
                return
            yield rows
            if len(rows) < PAGE_ROWS:
                return
            last = self.key(rows[-1])

    def fetch(self, stmt: AnySelect, params: dict[str, object]) -> list[tuple[object, ...]]:
        """One page through the driver's own cursor: no SQLAlchemy Row per row (the same
        reason as SourceReader's); a page is small enough to be fetched whole."""

        def read(dbapi_conn: Any, sql: str, values: Any) -> list[tuple[object, ...]]:
            cur = dbapi_conn.cursor()
            try:
                cur.execute(sql, values)
                return list(cur.fetchall())
            finally:
                cur.close()

        return self.with_driver(stmt, params, read)

    def with_driver(
        self, stmt: AnySelect, params: dict[str, object], fn: Callable[[Any, str, Any], T]
    ) -> T:
        """fn(DB-API connection, SQL, driver parameters) on a source connection: the page
        statement as the driver takes it (the native path reads it as COPY)."""
        compiled = self._compiled.get(stmt)
        if compiled is None:
            compiled = self._compiled[stmt] = stmt.compile(dialect=self.engine.dialect)
        state = compiled.construct_expanded_state(params)
        values = state.positional_parameters if self.engine.dialect.positional else state.parameters
        with source_connection(self.engine, self.what, self.source) as conn:
            dbapi_conn = conn.connection.dbapi_connection
            assert dbapi_conn is not None  # an open Connection always has one
            return fn(dbapi_conn, state.statement, values)

    def rows_by_keys(self, keys: Sequence[object]) -> list[Sequence[object]]:
        """The current rows of these keys (absent keys have no row), in statements small
        enough for the dialect's IN-list and parameter limits."""
        rows: list[Sequence[object]] = []
        wanted = [tuple(k) if isinstance(k, list) else k for k in keys]
        with source_connection(self.engine, self.what, self.source) as conn:
            for part in chunks(wanted, self.max_keys):
                stmt = self._by_keys.get(len(part))
                if stmt is None:
                    in_keys = self.keyset.in_keys(len(part))
                    stmt = self._by_keys[len(part)] = self._base.where(in_keys)
                params = self._params()
                params.update(self.keyset.in_params(part))
                rows += [tuple(r) for r in conn.execute(stmt, params).all()]
        return rows
