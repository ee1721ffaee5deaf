"""The schema registry over HTTPS, against the test's own registry (tests/integration/secure/
registry_tls.py) and the real Kafka on :9092: `run --once` publishes in the Confluent format
through https:// (the registry's own TLS, and a TLS front that requires a client certificate);
an untrusted registry certificate and a missing client certificate stop the run at once with
exit 7 and a named cause, not "did not answer" after the start-up timeout."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from tests.integration.pipeline.helpers import (
    PEOPLE_DDL,
    TENANT,
    PollerProcess,
    config,
    execute,
    people_entity,
    topics_deleted_after,
    unique_prefix,
)
from tests.integration.registry.stock import read_with_stock_consumer
from tests.integration.secure.registry_tls import TlsRegistry

pytestmark = pytest.mark.integration
T0 = dt.datetime(2024, 3, 1, 12, 0, 0)
STARTUP_TIMEOUT_S = 60  # what an unreachable registry would be retried for


@pytest.fixture
def prefix(kafka_bootstrap: str, tls_registry: TlsRegistry) -> Iterator[str]:
    p = unique_prefix()
    with topics_deleted_after(kafka_bootstrap, p):
        yield p
    client = SchemaRegistryClient({"url": tls_registry.http_url})
    with contextlib.suppress(Exception):
        for subject in client.get_subjects():
            if subject.startswith(p + "."):
                client.delete_subject(subject)


def tls_config(
    pg_url: str, bootstrap: str, prefix: str, url: str, options: dict[str, Any]
) -> dict[str, Any]:
    cfg = config(pg_url, TENANT, bootstrap, prefix, {"customers": people_entity("id", 100)})
    cfg["kafka"]["format"] = "confluent"
    cfg["schema_registry"] = {"url": url, "options": options}
    cfg["retry"]["startup_timeout_s"] = STARTUP_TIMEOUT_S
    execute(pg_url, *PEOPLE_DDL)
    execute(
        pg_url,
        *(
            f"INSERT INTO people VALUES ({i}, '{TENANT}', 'First {i}', 'Last {i}', "  # noqa: S608
            f"'{T0 + dt.timedelta(seconds=i)}')"
            for i in range(1, 4)
        ),
    )
    return cfg


@pytest.mark.parametrize("front", ["quarkus_tls", "client_certificate"])
def test_run_once_publishes_through_https(
    pg_url: str,
    kafka_bootstrap: str,
    prefix: str,
    tls_registry: TlsRegistry,
    tmp_path: Path,
    front: str,
) -> None:
    pki = tls_registry.pki
    if front == "quarkus_tls":
        url, options = tls_registry.https_url, {"ssl.ca.location": str(pki.ca)}
    else:
        url = tls_registry.mtls_url
        options = {
            "ssl.ca.location": str(pki.ca),
            "ssl.certificate.location": str(pki.client_cert),
            "ssl.key.location": str(pki.client_key),
        }
    cfg = tls_config(pg_url, kafka_bootstrap, prefix, url, options)
    proc = PollerProcess(cfg, tmp_path, front, "--once")
    assert proc.wait(120) == 0, proc.log()
    topic = f"{prefix}.customers"
    # A stock consumer finds the schemas the poller registered through HTTPS.
    messages = read_with_stock_consumer(kafka_bootstrap, tls_registry.http_url, [topic])[topic]
    assert sorted(int(k["local_id"]) for k, _v in messages) == [1, 2, 3]
    assert all(v is not None and v["first_name"] == f"First {k['local_id']}" for k, v in messages)


def test_untrusted_registry_certificate_exits_7_naming_the_cause(
    pg_url: str, kafka_bootstrap: str, prefix: str, tls_registry: TlsRegistry, tmp_path: Path
) -> None:
    other = str(tls_registry.pki.other_ca)
    cfg = tls_config(
        pg_url, kafka_bootstrap, prefix, tls_registry.https_url, {"ssl.ca.location": other}
    )
    proc = PollerProcess(cfg, tmp_path, "untrusted", "--once")
    code = proc.wait(120)
    log = proc.log()
    assert code == 7, log
    assert "TLS certificate verification failed" in log, log
    assert f"not signed by the CA in schema_registry.options ssl.ca.location ({other})" in log
    assert "Traceback" not in log and "did not answer" not in log, log
    assert proc.elapsed < STARTUP_TIMEOUT_S, "retried as if the registry were unreachable"


def test_missing_client_certificate_exits_7_naming_the_options(
    pg_url: str, kafka_bootstrap: str, prefix: str, tls_registry: TlsRegistry, tmp_path: Path
) -> None:
    options = {"ssl.ca.location": str(tls_registry.pki.ca)}
    cfg = tls_config(pg_url, kafka_bootstrap, prefix, tls_registry.mtls_url, options)
    proc = PollerProcess(cfg, tmp_path, "no-client-cert", "--once")
    code = proc.wait(120)
    log = proc.log()
    assert code == 7, log
    assert "requires a TLS client certificate and none is configured" in log, log
    assert "ssl.certificate.location" in log
    assert "Traceback" not in log and "did not answer" not in log, log
    assert proc.elapsed < STARTUP_TIMEOUT_S, "retried as if the registry were unreachable"
