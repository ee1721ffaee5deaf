"""Turns the native PostgreSQL path (poller.source.native_pg) on for the entities it can serve:
the message framing (header, key, size limit) comes from each entity's stream."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from poller.avro.schemas import _field_spec
from poller.avro.values import write_long
from poller.config import Mode
from poller.ops.entity_metrics import TenantMetrics
from poller.pipeline.stream import EntityStream
from poller.source import native_pg
from poller.source.reader import SourceReader

log = logging.getLogger(__name__)


def native_spec(stream: EntityStream) -> native_pg.NativeSpec:
    """What the extension needs to write exactly the messages `publish_batch` writes."""
    wire = stream.wire
    if wire is None:
        header = stream.schema.header
        key_head = stream.key_prefix.encode()
    else:
        header = wire.value_header
        key_head = wire.key.prefix + _avro_string(stream.tenant)
    return native_pg.NativeSpec(
        header=header,
        fields=[_field_spec(f) for f in stream.schema.raw["fields"]],
        tz=stream.tz,
        key_head=key_head,
        avro_key=wire is not None,
        max_value=min(stream.max_value_bytes, (1 << 63) - 1),
        time_mode=stream.cfg.batching.mode is not Mode.ID,
        layout=stream.layout,
        key_type=_key_type(stream),
    )


def _key_type(stream: EntityStream) -> str | None:
    """The canonical key field's Avro type (one key column), or None (the Python path)."""
    wire = stream.wire
    if wire is None or len(wire.key_fields) != 1:
        return None
    return wire.key_fields[0].type


def _avro_string(text: str) -> bytes:
    data = text.encode()
    return write_long(len(data)) + data


def attach(
    streams: Mapping[str, EntityStream],
    readers: Mapping[str, SourceReader],
    dialect: str,
    driver: str,
    meters: TenantMetrics,
) -> None:
    """Give each PostgreSQL entity's reader a native reader (when the extension is installed
    and POLLER_NATIVE is not 0); otherwise say once why the Python path serves them."""
    if dialect != "postgresql" or driver != "psycopg2" or not streams:
        return
    if not native_pg.available():
        log.info("the native PostgreSQL path is off (%s)", native_pg.why_off())
        return
    for name, stream in streams.items():
        reader = readers[name]
        fallback, served = meters.entity(name).native_callbacks()
        reader.native = native_pg.NativeReader(
            native_spec(stream), f"entity {name!r}", fallback, served
        )
