"""kafka.bootstrap_servers and kafka.options checked at load: a port that is not a number is named
at once (not after the startup wait), and an option the poller sets itself is refused rather
than overridden without a word."""

from __future__ import annotations

import pytest

from poller.config import KafkaConfig, parse_config
from poller.errors import ConfigError

BASE = {
    "tenant": "t1",
    "source": {"url": "sqlite:///x.db"},
    "entities": {"customers": {"table": "people", "key": "id",
                               "fields": {"local_id": "id", "first_name": "f_name"},
                               "batching": {"mode": "id", "column": "id"}}},
}  # fmt: skip


@pytest.mark.parametrize(
    "servers", ["127.0.0.1:9092", "k1:9092,k2:9093", "kafka", "[::1]:9092", "SASL_SSL://k:9093, k2"]
)
def test_broker_lists_librdkafka_takes_load(servers: str) -> None:
    assert KafkaConfig(bootstrap_servers=servers).bootstrap_servers == servers


@pytest.mark.parametrize(
    ("servers", "why"),
    [
        ("kafka:abc", "'kafka:abc': expected host:port (comma-separated)"),
        ("k1:9092,,", "'': expected host:port (comma-separated)"),
        (":9092", "':9092': expected host:port (comma-separated)"),
        ("k1:0", "'k1:0': the port is not in 1..65535"),
        ("k1:65536", "'k1:65536': the port is not in 1..65535"),
    ],
)
def test_a_bad_broker_entry_is_named(servers: str, why: str) -> None:
    raw = {**BASE, "kafka": {"format": "single_object", "bootstrap_servers": servers}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.problems == [f"kafka.bootstrap_servers: {why}"]


def test_options_the_poller_sets_itself_are_refused_each_with_what_to_use() -> None:
    options = {
        "transactional.id": "poller.other-tenant",
        "enable.idempotence": False,
        "bootstrap.servers": "k:1",
        "transaction.timeout.ms": 1000,
        "linger.ms": 5,  # an ordinary option: fine
    }
    raw = {**BASE, "kafka": {"format": "single_object", "options": options}}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    (problem,) = info.value.problems
    assert problem == (
        "kafka.options: bootstrap.servers is set by the poller: use kafka.bootstrap_servers; "
        "enable.idempotence is set by the poller: always on (transactions need it); "
        "transaction.timeout.ms is set by the poller: use kafka.transaction_timeout_s; "
        "transactional.id is set by the poller: <transactional_id_prefix>.<tenant>, one writer "
        "per tenant"
    )
    assert KafkaConfig(options={"linger.ms": 5}).options == {"linger.ms": 5}
