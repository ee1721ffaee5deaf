"""The source side of a verify: the tenant's rows in pages ordered by key, each with a flag
saying whether it is past the stored watermark (not published yet, so not compared), and the
same rows looked up by key for a repair.

Pages are keyset queries (`key > :last ORDER BY key LIMIT n`), each a short read-only
transaction on a pooled connection, so a verify of a 10M-row table neither holds memory nor
pins old row versions on the retailer's database for its whole length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa

from poller.config import EntityConfig, SourceConfig
from poller.source.probe import cursor_type
from poller.source.query import AnySelect, EntityQuery, Position
from poller.source.reader import source_connection

PAGE_ROWS = 10_000
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
            query.set_cursor_type(cursor_type(conn, query, entity))
        cols = [query.column(c) for c in entity.key_columns]
        self.composite = len(cols) > 1
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
        key: Any = sa.tuple_(*cols) if self.composite else cols[0]
        after_key: Any = (
            sa.tuple_(*(sa.bindparam(f"after_key{i}") for i in range(len(cols))))
            if self.composite
            else sa.bindparam("after_key0")
        )
        self._first: AnySelect = base.order_by(*cols).limit(PAGE_ROWS)
        self._next: AnySelect = base.where(key > after_key).order_by(*cols).limit(PAGE_ROWS)
        self._by_keys: AnySelect = base.where(key.in_(sa.bindparam("keys", expanding=True)))

    def key(self, row: Sequence[object]) -> object:
        """The row's key: a value, or a tuple for a composite key."""
        return self.layout.message_key(row)

    def _params(self) -> dict[str, object]:
        params = dict(self._after_params)
        if self.query.source.tenant_column is not None:
            params["tenant"] = self.query.tenant
        return params

    def pages(self) -> Iterator[Sequence[Sequence[object]]]:
        """Every row of the tenant, by key, a page at a time."""
        last: object = None
        while True:
            params = self._params()
            if last is not None:
                values = last if isinstance(last, tuple) else (last,)
                params.update({f"after_key{i}": v for i, v in enumerate(values)})
            stmt = self._first if last is None else self._next
            rows = self._fetch(stmt, params)
            if not rows:
                return
            yield rows
            if len(rows) < PAGE_ROWS:
                return
            last = self.key(rows[-1])

    def _fetch(self, stmt: AnySelect, params: dict[str, object]) -> list[tuple[object, ...]]:
        """One page through the driver's own cursor: no SQLAlchemy Row per row (the same
        reason as SourceReader's); a page is small enough to be fetched whole."""
        compiled = self._compiled.get(stmt)
        if compiled is None:
            compiled = self._compiled[stmt] = stmt.compile(dialect=self.engine.dialect)
        state = compiled.construct_expanded_state(params)
        values = state.positional_parameters if self.engine.dialect.positional else state.parameters
        with source_connection(self.engine, self.what, self.source) as conn:
            dbapi_conn = conn.connection.dbapi_connection
            assert dbapi_conn is not None  # an open Connection always has one
            cur = dbapi_conn.cursor()
            try:
                cur.execute(state.statement, values)
                return list(cur.fetchall())
            finally:
                cur.close()

    def rows_by_keys(self, keys: Sequence[object]) -> list[Sequence[object]]:
        """The current rows of these keys (absent keys have no row)."""
        if not keys:
            return []
        params = self._params()
        params["keys"] = [tuple(k) if isinstance(k, list) else k for k in keys]
        with source_connection(self.engine, self.what, self.source) as conn:
            return [tuple(r) for r in conn.execute(self._by_keys, params).all()]
