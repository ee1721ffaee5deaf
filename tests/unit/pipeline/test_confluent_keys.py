"""The batch loop renders Confluent keys of integers inline (no call per row): the bytes must be
exactly the key encoder's, for every integer and for the other key types it leaves alone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from poller.avro.keys import KeyField, build_key_encoder
from poller.avro.registry import Registered
from poller.avro.schemas import load_schema
from poller.batch import Batch, Position
from poller.config import EntityConfig
from poller.pipeline.stream import EntityStream, publish_batch
from poller.pipeline.wire import EntityWire

INTS = [0, 1, -1, 63, 64, -64, -65, 127, 128, 2**31, -(2**31), 2**63 - 1, -(2**63), 2**64 + 5,
        10**40, -(10**40)]  # fmt: skip


class _Publisher:
    def __init__(self) -> None:
        self.keys: list[bytes] = []

    def produce_fast(self, topic: str, value: Any, key: bytes, **_kw: Any) -> None:
        self.keys.append(key)

    def send(self, topic: str, key: bytes, value: Any, *_a: Any) -> None:
        if topic == "t":
            self.keys.append(key)

    def poll(self) -> None:
        pass


def _stream(key_type: str, tenant: str = "acme-ü") -> EntityStream:
    ent = EntityConfig(
        table="customers",
        fields={"local_id": "id"},
        key="id",
        batching={"mode": "id", "column": "id"},
    )
    kfields = (KeyField("id", "local_id", key_type),)  # type: ignore[arg-type]
    key = Registered("k", 8)
    wire = EntityWire(
        Registered("v", 7), key, {}, build_key_encoder(key.prefix, tenant, kfields, ("id",)),
        kfields,
    )  # fmt: skip
    return EntityStream("customers", ent, load_schema("customers"), "t", tenant, dt.UTC,
                        Position(), wire=wire)  # fmt: skip


@pytest.mark.parametrize("key_type", ["string", "long"])
def test_inline_integer_keys_are_the_key_encoders_bytes(key_type: str) -> None:
    stream = _stream(key_type)
    assert (stream.int_key_head is not None) == (key_type == "string")
    assert stream.wire is not None
    keys: list[object] = [*INTS, "A-7"]  # a text key takes the encoder itself
    if key_type == "long":
        keys = [k for k in keys if type(k) is int and -(2**63) <= k < 2**63]
    n = stream.n_fields
    # fields (local_id first), then the cursor and the tie-breaker (the key)
    rows = [(k, *([None] * (n - 1)), k, k) for k in keys]
    pub = _Publisher()
    stream.cfg = stream.cfg.model_copy(update={"on_bad_row": "fail"})
    out = publish_batch(stream, Batch(rows, Position(keys[-1]), None), pub, "wm", "dl")  # type: ignore[arg-type]
    assert out.error is None
    assert pub.keys == [stream.wire.encode_key(k) for k in keys]
