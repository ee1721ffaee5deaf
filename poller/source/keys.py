"""The database kinds of an entity's key columns: how a key read back from a topic becomes the
value the source compares (verify, repair, delete reconciliation; poller.avro.keys)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from poller.errors import SchemaMismatchError, SourceError
from poller.source.query import EntityQuery, column_kind, description_kind, split_table
from poller.source.reader import _connection, translate_error


def _kind(t: sa.types.TypeEngine[Any]) -> str:
    """column_kind, with MySQL's BINARY/VARBINARY as binary (SQLAlchemy keeps them apart from
    LargeBinary): a BINARY(16) key is bytes, read back from a topic as bytes."""
    if isinstance(t, sa.BINARY | sa.VARBINARY):
        return "binary"
    return column_kind(t)


def key_kinds(engine: sa.Engine, query: EntityQuery) -> list[str]:
    """The kind (see `column_kind`) of each key column, in key order: the reflected column type
    for a table, else what a zero-row probe of the column reports."""
    entity = query.entity
    what = f"entity {query.name!r}"
    dialect = engine.dialect.name
    with _connection(engine, what, query.source) as conn:
        reflected: dict[str, str] = {}
        if entity.table is not None:
            schema, table = split_table(entity.table)
            try:
                columns = sa.inspect(conn).get_columns(table, schema=schema)
            except sa_exc.NoSuchTableError:
                columns = []
            reflected = {c["name"].lower(): _kind(c["type"]) for c in columns}
        kinds = []
        for column in entity.key_columns:
            kind = reflected.get(column.lower())
            if kind is None or kind == "unknown":
                try:
                    result = conn.execute(query.probe(query.column(column)))
                except sa_exc.DBAPIError as exc:
                    err = translate_error(exc, what, query.source)
                    if isinstance(err, SourceError):
                        raise err from exc
                    raise SchemaMismatchError(f"{what}: key column {column!r}: {err}") from exc
                desc = result.cursor.description[0] if result.cursor is not None else None
                result.close()
                kind = description_kind(dialect, desc) if desc else "unknown"
            kinds.append(kind)
        return kinds
