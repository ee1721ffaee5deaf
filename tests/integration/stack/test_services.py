"""The local service stack behaves as the poller needs it to.

Kafka transactions with read_committed consumers, compacted topics, and
exact round trips of unicode text and DECIMAL values in PostgreSQL and MariaDB.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka import (
    Message,
    Producer,
)
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from tests.integration.topics import read_to_end

pytestmark = pytest.mark.integration

NewTopicFn = Callable[..., str]

UNICODE_TEXT = "Zoë Ångström — 東京 🚀 \"quoted\" 'single' \\ back"
AMOUNT = Decimal("1234567890.12")
NEGATIVE_AMOUNT = Decimal("-0.01")


def read_partition(
    bootstrap: str, topic: str, isolation: str, partition: int = 0, timeout: float = 30.0
) -> list[Message]:
    """Every message of ``topic``/``partition`` from the beginning to the end."""
    messages = read_to_end(bootstrap, [topic], timeout, isolation, "svc-test")[topic]
    return [m for m in messages if m.partition() == partition]


def text(data: bytes | None) -> str:
    assert data is not None
    return data.decode()


def produce_in_transaction(producer: Producer, topic: str, values: list[str], commit: bool) -> None:
    producer.begin_transaction()
    for value in values:
        producer.produce(topic, key=value.encode(), value=value.encode())
    producer.flush(30)
    if commit:
        producer.commit_transaction(30)
    else:
        producer.abort_transaction(30)


def test_status_reports_services_up(services_script: Path) -> None:
    out = subprocess.run(
        [str(services_script), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    services = (("kafka", 9092), ("registry", 8081), ("postgres", 5432), ("mariadb", 3306),
                ("kafka-secure", 9190))  # fmt: skip
    for service, port in services:
        assert service in lines, out
        assert lines[service].split()[1] == "up", f"{service} is not up: {lines[service]}"
        assert f"127.0.0.1:{port}" in lines[service]
    assert "prometheus" in lines


def test_aborted_transaction_invisible_to_read_committed(
    kafka_bootstrap: str, new_topic: NewTopicFn
) -> None:
    topic = new_topic("svc-txn")
    producer = Producer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "transactional.id": f"svc-test-{uuid.uuid4().hex}",
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    producer.init_transactions(30)
    aborted = [f"aborted-{i}" for i in range(3)]
    committed = [f"committed-{i}" for i in range(3)]
    produce_in_transaction(producer, topic, aborted, commit=False)
    produce_in_transaction(producer, topic, committed, commit=True)

    seen = [text(m.value()) for m in read_partition(kafka_bootstrap, topic, "read_committed")]
    assert seen == committed

    # The aborted records were really written: a read_uncommitted reader sees them.
    raw = [text(m.value()) for m in read_partition(kafka_bootstrap, topic, "read_uncommitted")]
    assert raw == aborted + committed


def test_compacted_topic_keeps_last_value_per_key(
    kafka_bootstrap: str, kafka_admin: AdminClient, new_topic: NewTopicFn
) -> None:
    topic = new_topic("svc-compact", config={"cleanup.policy": "compact"})

    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = kafka_admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["cleanup.policy"].value == "compact"

    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    expected: dict[str, str] = {}
    for version in range(3):
        for key_no in range(5):
            if version == 2 and key_no % 2:
                continue  # odd keys stop at version 1
            key, value = f"k{key_no}", f"k{key_no}-v{version}"
            producer.produce(topic, key=key.encode(), value=value.encode())
            expected[key] = value
    assert producer.flush(30) == 0

    last: dict[str, str] = {}
    for msg in read_partition(kafka_bootstrap, topic, "read_committed"):
        last[text(msg.key())] = text(msg.value())
    assert last == expected


def _roundtrip(url: str, text_type: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"CREATE TABLE roundtrip (id INTEGER PRIMARY KEY, "
                    f"name {text_type} NOT NULL, amount DECIMAL(12,2) NOT NULL)"
                )
            )
            conn.execute(
                sa.text("INSERT INTO roundtrip (id, name, amount) VALUES (:id, :name, :amount)"),
                [
                    {"id": 1, "name": UNICODE_TEXT, "amount": AMOUNT},
                    {"id": 2, "name": "", "amount": NEGATIVE_AMOUNT},
                ],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name, amount FROM roundtrip ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [tuple(r) for r in rows] == [(1, UNICODE_TEXT, AMOUNT), (2, "", NEGATIVE_AMOUNT)]
    for row in rows:
        assert isinstance(row.amount, Decimal)
    assert str(rows[0].amount) == "1234567890.12"


def test_postgres_roundtrip(pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg2://poller:poller@127.0.0.1:5432/t_")
    _roundtrip(pg_url, "TEXT")


def test_mariadb_roundtrip(mariadb_url: str) -> None:
    assert mariadb_url.startswith("mysql+pymysql://poller:poller@127.0.0.1:3306/t_")
    _roundtrip(mariadb_url, "VARCHAR(200) CHARACTER SET utf8mb4")
