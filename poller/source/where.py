"""The operator's extra condition of a backfill (`--where`), made safe to AND into a statement.

The condition is parsed with sqlglot in the source's dialect and must be exactly one boolean
expression: no statement separator, no set operation, no subquery (it may read only the
entity's own row), no comment (a `--` or an open `/*` could swallow the rest of the
statement). What is emitted is sqlglot's rendering of the parsed expression, not the operator's
text: whatever the parser understood is what the database gets, quoted by the same rules, so a
quote or parenthesis that escapes on the server cannot have been read as harmless here. The
statement wraps it as one parenthesized AND-ed term beside the tenant filter, and a zero-row
run of that statement (`AND 1=0`) tests it on the database before it is stored.
"""

from __future__ import annotations

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from poller.errors import ConfigError

# SQLAlchemy dialect names -> sqlglot's
_DIALECTS = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mssql": "tsql",
    "oracle": "oracle",
    "sqlite": "sqlite",
}
_FORBIDDEN: tuple[type, ...] = (
    exp.Query,  # SELECT, UNION/INTERSECT/EXCEPT, subqueries
    exp.Subquery,
    exp.DDL,
    exp.DML,
    exp.Command,
    exp.Set,
    exp.Into,
    exp.Table,
)


def _problem(sql: str, why: str) -> ConfigError:
    return ConfigError([f"--where {sql!r}: {why}"])


def normalize_where(sql: str, dialect: str) -> str:
    """The condition as it is emitted: parsed, checked, rendered by sqlglot. Raises
    ConfigError naming what is wrong."""
    body = sql.strip()
    if not body:
        raise _problem(sql, "give one SQL condition")
    read = _DIALECTS.get(dialect)
    try:
        parsed = [e for e in sqlglot.parse(body, read=read) if e is not None]
    except SqlglotError as exc:
        first = str(exc).splitlines()[0]
        raise _problem(sql, f"is not one SQL condition ({first})") from exc
    if len(parsed) != 1:
        raise _problem(sql, "give exactly one condition (no ';' and no second statement)")
    expr = parsed[0]
    for node in expr.walk():
        if isinstance(node, _FORBIDDEN):
            kind = type(node).__name__.upper()
            raise _problem(sql, f"only a condition on the entity's row is allowed, not {kind}")
        if node.comments:
            raise _problem(sql, "comments are not allowed in the condition")
    if isinstance(expr, exp.Paren) and isinstance(expr.this, exp.Tuple | exp.Literal):
        raise _problem(sql, "is a value, not a condition")
    return expr.sql(dialect=read, comments=False)
