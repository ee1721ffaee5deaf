"""The database types of an entity's key columns, which fix the Avro key record's field types
(Confluent wire format) before any row is read."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from poller.errors import SchemaMismatchError, SourceError
from poller.source.query import EntityQuery, column_kind, description_kind, split_table
from poller.source.reader import _connection, translate_error


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
            reflected = {c["name"].lower(): column_kind(c["type"]) for c in columns}
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
