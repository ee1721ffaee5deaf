"""verify's source side on the native PostgreSQL path: a page (the same keyset SELECT as the
Python path's, see source_side.py) is read as `COPY (...) TO STDOUT (FORMAT BINARY)` and the
extension writes each row's value exactly as the live native path writes it; verify keeps only
the value's digest, the integer key and the pending flag.

The extension is run twice over a page's bytes: once for the values (with the integer key as
its JSON key, `123]`), once for the pending flag (as the "key" of a value with no fields,
`0]` or `1]`). A page it cannot take (a bad row, a type pair it does not encode) is read again
by the Python path, so every decision stays the Python path's; an entity it cannot take at all
(soft deletes, a key that is not one integer column, another client encoding) stays on the
Python path for the whole verify.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

from poller.pipeline.native import native_spec
from poller.pipeline.stream import EntityStream
from poller.source import native_pg
from poller.source.native_pg import Unsupported, zone_table

log = logging.getLogger(__name__)

_INT_OIDS = (20, 21, 23)  # int8, int2, int4
# (key, pending, value with its header) per row
Page = tuple[list[int], list[bool], list[bytes]]


class NativePages:
    """Reads verify pages of one entity through COPY BINARY and the extension."""

    def __init__(self, stream: EntityStream, what: str) -> None:
        self.spec = native_spec(stream)
        self.what = what
        self._transcoders: tuple[Any, Any] | None = None
        self.native_pages = 0  # pages the extension encoded
        self.fallback_pages = 0  # pages the Python path read instead (bad rows, types)

    @classmethod
    def of(
        cls, stream: EntityStream, dialect: str, driver: str, composite: bool
    ) -> NativePages | None:
        """The native reader of the entity's pages, or None when the Python path reads them."""
        if dialect != "postgresql" or driver != "psycopg2" or not native_pg.available():
            return None
        if composite or stream.layout.has_deleted:
            return None
        return cls(stream, f"verify of {stream.name!r}")

    def read(self, dbapi_conn: Any, sql: str, params: Any) -> Page | None:
        """One page, or None when the Python path must read it. Raises Unsupported when no
        page of the entity can take this path."""
        cur = dbapi_conn.cursor()
        try:
            stmt = cur.mogrify(sql, params)  # the driver's own literal quoting, as the reader
            if self._transcoders is None:
                cur.execute(b"SELECT * FROM (" + stmt + b") AS poller_types LIMIT 0")
                oids = tuple(int(d.type_code) for d in cur.description)
                self._transcoders = self._build(oids, dbapi_conn.encoding)
            out = io.BytesIO()
            cur.copy_expert(b"COPY (" + stmt + b") TO STDOUT (FORMAT BINARY)", out)
        finally:
            cur.close()
        data = out.getvalue()
        values_tc, pending_tc = self._transcoders
        got = values_tc.transcode(data)
        if len(got) == 2:  # (reason, row): the Python path decides this page
            self._fallback(str(got[0]))
            return None
        flags = pending_tc.transcode(data)
        if len(flags) == 2:  # pragma: no cover - an int4 0/1 column always transcodes
            self._fallback(str(flags[0]))
            return None
        values, keys = got[0], got[1]
        self.native_pages += 1
        return [int(k[:-1]) for k in keys], [f == b"1]" for f in flags[1]], values

    def _build(self, oids: Sequence[int], encoding: str) -> tuple[Any, Any]:
        native: Any = getattr(native_pg, "_native", None)
        assert native is not None  # of() checked
        lay = self.spec.layout
        if encoding not in ("UTF8", "UNICODE"):
            raise Unsupported(f"client encoding {encoding} (needs UTF8)")
        if oids[lay.key_at] not in _INT_OIDS or oids[-1] not in _INT_OIDS:
            raise Unsupported(f"a key of type oid {oids[lay.key_at]} (integer keys only)")
        starts, zone_range = zone_table(self.spec.tz)
        fields = [
            (oids[i], f.kind, f.nullable, f.null_branch, f.value_branch, f.precision, f.scale)
            for i, f in enumerate(self.spec.fields)
        ]
        no_limit = (1 << 63) - 1  # verify digests any size, as its Python path does
        try:
            cols, zone = list(oids), (starts, zone_range)
            key, flag = ("json_int", lay.key_at, b""), ("json_int", len(cols) - 1, b"")
            values = native.Transcoder(
                self.spec.header, fields, cols, *zone, key, None, [], no_limit
            )
            pending = native.Transcoder(b"", [], cols, *zone, flag, None, [], no_limit)
        except ValueError as exc:
            raise Unsupported(f"the extension does not handle {exc}") from None
        return values, pending

    def _fallback(self, reason: str) -> None:
        if not self.fallback_pages:
            log.info("%s: the Python path reads a page (%s)", self.what, reason)
        self.fallback_pages += 1
