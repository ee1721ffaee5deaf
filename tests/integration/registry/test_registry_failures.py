"""Registry failures against the real registry: unreachable at start (exit 7, URL redacted), an
incompatible schema (409: exit 8 naming the subject and the change), a lookup-only start whose
schema was never registered (exit 8), and an outage after start that changes nothing."""

from __future__ import annotations

import copy
import datetime as dt
import json
import socket
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from poller.avro.schemas import load_schema
from tests.integration.pipeline.helpers import (
    PEOPLE_DDL,
    POLLER_BIN,
    TENANT,
    PollerProcess,
    config,
    execute,
    people_entity,
    wait_until,
)
from tests.integration.registry.proxy import TcpProxy
from tests.integration.registry.stock import read_with_stock_consumer

pytestmark = pytest.mark.integration
T0 = dt.datetime(2024, 3, 1, 12, 0, 0)


def confluent_config(
    pg_url: str, bootstrap: str, prefix: str, registry: dict[str, Any], **entity: Any
) -> dict[str, Any]:
    cfg = config(
        pg_url, TENANT, bootstrap, prefix, {"customers": people_entity("id", 100, **entity)}
    )
    cfg["kafka"]["format"] = "confluent"
    cfg["schema_registry"] = registry
    return cfg


def insert_people(url: str, ids: range) -> None:
    execute(
        url,
        *(
            f"INSERT INTO people VALUES ({i}, '{TENANT}', 'First {i}', 'Last {i}', "  # noqa: S608
            f"'{T0 + dt.timedelta(seconds=i)}')"
            for i in ids
        ),
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_registry_at_start_exits_7_with_the_url_redacted(
    pg_url: str, kafka_bootstrap: str, prefix: str, tmp_path: Path
) -> None:
    execute(pg_url, *PEOPLE_DDL)
    insert_people(pg_url, range(1, 4))
    port = closed_port()
    url = f"http://reg-user:Sup3rS3cret@127.0.0.1:{port}/apis/ccompat/v7"
    cfg = confluent_config(pg_url, kafka_bootstrap, prefix, {"url": url})
    cfg["retry"]["startup_timeout_s"] = 2
    proc = PollerProcess(cfg, tmp_path, "unreachable", "--once")
    code = proc.wait(90)
    log = proc.log()
    assert code == 7, log
    assert f"http://reg-user:***@127.0.0.1:{port}/apis/ccompat/v7" in log, log
    assert "Sup3rS3cret" not in log


def test_incompatible_schema_exits_2_naming_the_subject_and_the_change(
    pg_url: str, kafka_bootstrap: str, prefix: str, registry_url: str, tmp_path: Path
) -> None:
    execute(pg_url, *PEOPLE_DDL)
    insert_people(pg_url, range(1, 4))
    subject = f"{prefix}.customers-value"
    # A version the poller's schema cannot follow under FULL_TRANSITIVE: it has a required
    # field without a default, which the poller's records would lack.
    future = copy.deepcopy(load_schema("customers").raw)
    future["fields"].append({"name": "loyalty_tier", "type": "string"})
    client = SchemaRegistryClient({"url": registry_url})
    client.register_schema(subject, Schema(json.dumps(future), "AVRO"))
    client.set_compatibility(subject, "FULL_TRANSITIVE")  # as an earlier poller left it

    cfg = confluent_config(pg_url, kafka_bootstrap, prefix, {"url": registry_url})
    # `poller check` finds it without registering anything...
    (tmp_path / "check.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    checked = subprocess.run(
        [str(POLLER_BIN), "check", "--config", str(tmp_path / "check.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 8, checked.stdout + checked.stderr
    assert f"subject {subject!r} refuses schema retail.loyalty.Customer" in checked.stdout
    # ...and `poller run` stops on it before writing anything.
    proc = PollerProcess(cfg, tmp_path, "incompatible", "--once")
    code = proc.wait(90)
    log = proc.log()
    assert code == 8, log
    assert subject in log and "loyalty_tier" in log, log
    assert "Traceback" not in log
    assert len(client.get_versions(subject)) == 1  # nothing registered
    topics = SchemaRegistryClient({"url": registry_url}).get_subjects()
    assert f"{prefix}.customers-key" not in topics  # stopped before going on


def test_lookup_only_start_without_the_schema_exits_8(
    pg_url: str, kafka_bootstrap: str, prefix: str, registry_url: str, tmp_path: Path
) -> None:
    execute(pg_url, *PEOPLE_DDL)
    insert_people(pg_url, range(1, 4))
    cfg = confluent_config(
        pg_url, kafka_bootstrap, prefix, {"url": registry_url, "auto_register": False}
    )
    proc = PollerProcess(cfg, tmp_path, "lookup", "--once")
    code = proc.wait(90)
    log = proc.log()
    assert code == 8, log
    assert f"{prefix}.customers-value" in log and "auto_register is false" in log, log


def test_registry_outage_after_start_changes_nothing(
    pg_url: str, kafka_bootstrap: str, prefix: str, registry_url: str, tmp_path: Path
) -> None:
    execute(pg_url, *PEOPLE_DDL)
    insert_people(pg_url, range(1, 6))
    target = urlsplit(registry_url)
    assert target.hostname is not None and target.port is not None
    proxy = TcpProxy(target.hostname, target.port)
    via_proxy = registry_url.replace(f":{target.port}", f":{proxy.port}", 1)
    cfg = confluent_config(pg_url, kafka_bootstrap, prefix, {"url": via_proxy}, poll_interval_s=0.3)
    topic = f"{prefix}.customers"
    proc = PollerProcess(cfg, tmp_path, "outage")
    try:

        def published() -> int:
            try:
                got = read_with_stock_consumer(kafka_bootstrap, registry_url, [topic], 10)
            except pytest.fail.Exception:
                return 0  # the topic does not exist yet
            return len(got[topic])

        wait_until(lambda: published() == 5, 90, "the first 5 rows", 0.5, proc)
        proxy.stop()  # from now on the registry is unreachable for the poller
        insert_people(pg_url, range(6, 11))
        wait_until(lambda: published() == 10, 60, "5 more rows during the outage", 0.5, proc)
        assert proc.alive()
    finally:
        proxy.stop()
        proc.kill()
    # Every message decodes with the stock deserializer (the consumers' path to the registry
    # is up): the ids cached at start are the registered ones.
    messages = read_with_stock_consumer(kafka_bootstrap, registry_url, [topic])[topic]
    assert sorted(int(k["local_id"]) for k, _v in messages) == list(range(1, 11))
    assert all(v is not None and v["first_name"] == f"First {k['local_id']}" for k, v in messages)
    assert "Traceback" not in proc.log()
