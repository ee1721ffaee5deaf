"""Message size limits. A row whose message would be larger than its topic's
`max.message.bytes` (read from the broker at start) can never be published: the broker refuses
the batch at commit, and retrying the transaction would fail forever. Such a row is a bad row
instead (the entity's `on_bad_row` policy applies), and the producer's batches are kept below
the smallest limit so that many small rows never add up to a refused batch either.

The broker limits the batch as compressed, so a large value that compresses well still fits:
only a value over the limit is compressed here (lz4 and gzip as the producer would; snappy and
zstd are counted uncompressed, which can only err on the safe side).
"""

from __future__ import annotations

import json
import sys
import zlib
from dataclasses import dataclass, field

import lz4.frame

from poller.config import KafkaConfig
from poller.errors import BadValueError
from poller.kafka.publisher import PRODUCER_DEFAULTS
from poller.kafka.topics import max_message_bytes

# What a record needs beyond its value: key, headers, record and batch framing. Compression
# (lz4) can also grow incompressible data by ~0.4%.
_FRAMING = 2048
NO_LIMIT = sys.maxsize


def usable_bytes(max_message_bytes: int) -> int:
    """The largest value that surely fits a record batch of `max_message_bytes`."""
    return max(1, max_message_bytes - max_message_bytes // 250 - _FRAMING)


def compressed_size(value: bytes, codec: str) -> int:
    if codec == "lz4":
        return len(lz4.frame.compress(value))
    if codec == "gzip":
        return len(zlib.compress(value)) + 18  # gzip header and trailer
    return len(value)


def check_size(value: bytes, topic: str, limit: int, codec: str) -> None:
    """Called only for a value longer than `limit`: raise if even compressed it is too large."""
    size = compressed_size(value, codec)
    if size > limit:
        raise too_large(topic, size, limit)


def too_large(topic: str, size: int, limit: int) -> BadValueError:
    return BadValueError(
        "(message)",
        b"",
        f"the encoded row is {size} bytes (compressed), more than the {limit} a message may "
        f"hold on topic "
        f"{topic} (its max.message.bytes, less framing); raise the topic's max.message.bytes "
        "(and kafka.options message.max.bytes), or leave the large column out",
    )


def fit_dead_letter(payload: bytes, limit: int) -> bytes:
    """A dead letter too large for its topic keeps everything but the row's values."""
    if len(payload) <= limit:
        return payload
    record = json.loads(payload)
    record["row"] = None
    record["row_omitted"] = f"{len(payload)} bytes, over the dead-letter topic's limit"
    return json.dumps(record, ensure_ascii=False).encode()


@dataclass(frozen=True)
class MessageLimits:
    per_topic: dict[str, int] = field(default_factory=dict)  # the largest value that fits
    batch_bytes: int = NO_LIMIT  # the producer's batch.size must stay below every topic's
    compression: str = "none"  # the producer's compression.type


def read_limits(kafka: KafkaConfig, topics: list[str]) -> MessageLimits:
    """The limits of the poller's topics, also bounded by the producer's message.max.bytes."""
    producer_max = int(
        kafka.options.get("message.max.bytes", PRODUCER_DEFAULTS["message.max.bytes"])
    )
    found = max_message_bytes(kafka, topics)
    per_topic = {t: usable_bytes(min(found.get(t, producer_max), producer_max)) for t in topics}
    codec = str(
        kafka.options.get("compression.type")
        or kafka.options.get("compression.codec")
        or PRODUCER_DEFAULTS["compression.type"]
    )
    return MessageLimits(per_topic, min(per_topic.values(), default=NO_LIMIT), codec)
