"""kafka.message_headers: the three per-message headers are on by default and can be turned off
(they cost about as much as the rest of a produce() call)."""

from __future__ import annotations

from poller.avro.schemas import load_all
from poller.batch import BEGINNING
from poller.config import parse_config
from poller.pipeline.stream import make_streams


def _streams(**kafka: object) -> dict[str, object]:
    cfg = parse_config(
        {
            "tenant": "acme",
            "source": {"url": "sqlite:///unused.db"},
            "kafka": {"format": "single_object", **kafka},
            "entities": {
                "customers": {
                    "table": "customers",
                    "fields": {"local_id": "id", "updated_at": "updated_at"},
                    "key": "id",
                    "batching": {"mode": "id", "column": "id"},
                }
            },
        }
    )
    return dict(make_streams(cfg, load_all(), {}, {"customers": BEGINNING}))


def test_headers_are_sent_by_default() -> None:
    stream = _streams()["customers"]
    assert [h[0] for h in stream.headers] == ["tenant", "entity", "schema"]  # type: ignore[attr-defined]


def test_headers_can_be_turned_off() -> None:
    assert _streams(message_headers=False)["customers"].headers is None  # type: ignore[attr-defined]
