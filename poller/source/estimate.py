"""A cheap estimate of how many rows an entity still has to publish, for progress bars.

PostgreSQL and MySQL/MariaDB are asked for their planner's row estimate of the batch query
without its LIMIT (EXPLAIN: nothing is read); SQLite counts (a local file); other databases
give no estimate. Values stay bound parameters, as in every other query.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa

from poller.batch import Position
from poller.errors import PollerError
from poller.source.query import AnySelect, EntityQuery
from poller.source.reader import _connection

log = logging.getLogger(__name__)


def _driver_sql(engine: sa.Engine, stmt: AnySelect, params: dict[str, object]) -> tuple[str, Any]:
    state = stmt.compile(dialect=engine.dialect).construct_expanded_state(params)
    if engine.dialect.positional:
        return state.statement, state.positional_parameters
    return state.statement, state.parameters


def estimate_remaining(engine: sa.Engine, query: EntityQuery, position: Position) -> int | None:
    """Rows after `position` (of this tenant), estimated; None when the database cannot say
    cheaply or the estimate fails (a progress bar is not worth an error)."""
    stmt, params = query.batch(position, None)
    return estimate_rows(engine, query, stmt, params)


def estimate_rows(
    engine: sa.Engine, query: EntityQuery, stmt: AnySelect, params: dict[str, object]
) -> int | None:
    """The rows `stmt` would return without its LIMIT, estimated as above."""
    stmt = stmt.limit(None).order_by(None)
    dialect = engine.dialect.name
    try:
        with _connection(engine, f"estimate of {query.name!r}", query.source) as conn:
            if dialect == "postgresql":
                sql, values = _driver_sql(engine, stmt, params)
                plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, values).scalar_one()
                if isinstance(plan, str):
                    plan = json.loads(plan)
                return int(plan[0]["Plan"]["Plan Rows"])
            if dialect in ("mysql", "mariadb"):
                sql, values = _driver_sql(engine, stmt, params)
                result = conn.exec_driver_sql("EXPLAIN " + sql, values)
                rows = [r._mapping.get("rows") for r in result]
                counts = [int(r) for r in rows if r is not None]
                return max(counts) if counts else None
            if dialect == "sqlite":
                counted = sa.select(sa.func.count()).select_from(stmt.subquery())
                return int(conn.execute(counted, params).scalar_one())
    except (PollerError, sa.exc.SQLAlchemyError, KeyError, IndexError, TypeError, ValueError):
        log.debug("no row estimate for %s", query.name, exc_info=True)
    return None
