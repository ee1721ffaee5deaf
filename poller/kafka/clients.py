"""Kafka clients made from the configuration: a client librdkafka refuses to create is a
configuration problem named with its field, never a traceback.

librdkafka checks its options, and reads the TLS files they name, when a client is created: an
unknown option, a bad value or an unreadable PEM (`ssl.ca.location failed: ... BIO lib`) raise
KafkaException from the constructor, wherever in the code the first client happens to be made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from poller.errors import ConfigError

_Client = TypeVar("_Client", AdminClient, Consumer, Producer)


def create(kind: type[_Client], conf: Mapping[str, Any]) -> _Client:
    """`kind(conf)`; a refusal is a ConfigError on kafka.options with librdkafka's reason."""
    try:
        return kind(dict(conf))
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        reason = err.str() if isinstance(err, KafkaError) else str(exc)
        raise ConfigError([f"kafka.options: {reason}"]) from None
