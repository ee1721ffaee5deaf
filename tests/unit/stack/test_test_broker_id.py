"""The private test broker's cluster id never reads as a command-line option."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

from tests.integration.faults.broker import kafka_cluster_id


def test_an_id_that_would_start_with_a_dash_is_drawn_again() -> None:
    # 0xf8 = 111110 in the first six bits: url-safe base64 index 62, "-". CI drew such an id once.
    dashed = bytes([0xF8]) + bytes(15)
    plain = bytes(range(16))
    assert base64.urlsafe_b64encode(dashed).decode().startswith("-")
    draws: Iterator[bytes] = iter([dashed, dashed, plain])
    assert kafka_cluster_id(lambda: next(draws)) == base64.urlsafe_b64encode(plain).decode()[:22]


def test_random_ids_are_kafka_shaped() -> None:
    for _ in range(2000):
        text = kafka_cluster_id()
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", text), text
