"""Micro-benchmark: generated encoder vs fastavro.schemaless_writer on one customers row.

Run: .venv/bin/python bench/encode_micro.py [rows]. Prints rows/s for each; not a test.
"""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from functools import partial
from zoneinfo import ZoneInfo

import fastavro

from poller.avro.encoder import build_encoder
from poller.avro.schemas import load_schema

ROW: tuple[object, ...] = (
    "1048576", "Иван Петрович Сидоров", "Иван", "Петрович", "Сидоров", "ivan.sidorov@example.com",
    "+7 912 345-67-89", "M", date(1984, 7, 15), "Россия", "Свердловская обл.", "Екатеринбург",
    "620014", datetime(2019, 3, 2, 14, 5, 33), datetime(2024, 11, 20, 8, 41, 7, 123456),
)  # fmt: skip


def rate(fn: Callable[[], object], rows: int) -> float:
    best = 0.0
    for _ in range(5):  # best of 5 keeps scheduler noise out
        t0 = time.perf_counter()
        for _ in range(rows):
            fn()
        best = max(best, rows / (time.perf_counter() - t0))
    return best


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    es = load_schema("customers")
    record = dict(zip(es.field_names, ROW, strict=True))
    record = {k: v.replace(tzinfo=UTC) if isinstance(v, datetime) else v for k, v in record.items()}

    def fastavro_one() -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, es.schema, record)
        return buf.getvalue()

    ours_utc = build_encoder(es, UTC)
    ours_berlin = build_encoder(es, ZoneInfo("Europe/Berlin"))
    assert ours_utc(ROW)[10:] == fastavro_one()
    base = rate(fastavro_one, rows)
    print(f"fields: {len(es.field_names)}, rows per run: {rows}")
    print(f"fastavro.schemaless_writer      {base:>10,.0f} rows/s")
    for label, enc in (
        ("generated, tz=UTC", ours_utc),
        ("generated, tz=Europe/Berlin", ours_berlin),
    ):
        r = rate(partial(enc, ROW), rows)
        print(f"{label:<31} {r:>10,.0f} rows/s  ({r / base:.1f}x)")


if __name__ == "__main__":
    main()
