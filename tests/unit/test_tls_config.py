"""TLS settings checked before any connection: the files that Kafka's options and the source name
(at load, each named with its field), a client librdkafka refuses (a configuration problem,
never a traceback, for the poller and the worker alike), and source TLS files that would be
ignored without `require_tls`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from poller.config import parse_config
from poller.errors import ConfigError
from poller.fleet.settings import load_worker_config
from poller.kafka.clients import create


def app(options: dict[str, Any], source: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "tenant": "acme-corp",
        "source": source or {"url": "sqlite:///x.db"},
        "kafka": {"format": "single_object", "options": options},
        "entities": {"customers": {"table": "people", "key": "id",
                                   "fields": {"local_id": "id", "first_name": "f_name"},
                                   "batching": {"mode": "id", "column": "id"}}},
    }  # fmt: skip


def test_kafka_tls_files_are_checked_at_load_each_named(tmp_path: Path) -> None:
    options = {
        "security.protocol": "SSL",
        "ssl.ca.location": str(tmp_path / "no-ca.pem"),
        "ssl.certificate.location": str(tmp_path),  # a directory
        "ssl.key.location": str(tmp_path / "no-client.key"),
        "ssl.crl.location": str(tmp_path / "no.crl"),
        "sasl.kerberos.keytab": str(tmp_path / "no.keytab"),
    }
    with pytest.raises(ConfigError) as info:
        parse_config(app(options))
    assert info.value.problems == [
        f"kafka.options.ssl.ca.location: no such file '{tmp_path}/no-ca.pem'",
        f"kafka.options.ssl.certificate.location: '{tmp_path}' is a directory, not a file",
        f"kafka.options.ssl.key.location: no such file '{tmp_path}/no-client.key'",
        f"kafka.options.ssl.crl.location: no such file '{tmp_path}/no.crl'",
        f"kafka.options.sasl.kerberos.keytab: no such file '{tmp_path}/no.keytab'",
    ]
    # `poller acl` and `tenants put` inspect a configuration that may run on another host.
    assert parse_config(app(options), check_files=False).kafka.options


def test_a_kafka_ca_directory_probe_and_an_inline_certificate_load(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("not read here\n")
    for options in (
        {"ssl.ca.location": str(tmp_path)},  # a CA directory (capath)
        {"ssl.ca.location": "probe"},  # librdkafka searches the system's CA paths
        {"ssl.key.location": str(key), "ssl.certificate.pem": "-----BEGIN CERTIFICATE-----"},
    ):
        assert parse_config(app(options)).kafka.options
    with pytest.raises(ConfigError, match=r"kafka.options.ssl.key.location: set ssl.certif"):
        parse_config(app({"ssl.key.location": str(key)}))


def test_the_workers_kafka_files_are_checked_with_its_other_problems(tmp_path: Path) -> None:
    worker = tmp_path / "worker.yaml"
    worker.write_text(
        f"kafka:\n  options: {{ssl.ca.location: {tmp_path}/gone.pem}}\nmax_tenants: 0\n"
    )
    with pytest.raises(ConfigError) as info:
        load_worker_config(str(worker), {})
    text = "\n".join(info.value.problems)
    assert f"kafka.options.ssl.ca.location: no such file '{tmp_path}/gone.pem'" in text
    assert "max_tenants" in text


@pytest.mark.parametrize("kind", [AdminClient, Consumer, Producer])
def test_a_client_librdkafka_refuses_is_a_config_error_naming_its_reason(
    kind: type[Any], tmp_path: Path
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")  # exists: only librdkafka can tell
    conf = {"security.protocol": "SSL", "ssl.ca.location": str(not_pem), "group.id": "g"}
    with pytest.raises(ConfigError) as info:
        create(kind, conf)
    (problem,) = info.value.problems
    assert problem.startswith("kafka.options: Failed to create")
    assert "ssl.ca.location failed" in problem
    with pytest.raises(ConfigError, match=r"No such configuration property: \"securty.protocol\""):
        create(kind, {"securty.protocol": "SSL", "group.id": "g"})


def test_poller_run_with_an_unreadable_kafka_ca_exits_2_without_a_traceback(
    tmp_path: Path,
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    config = tmp_path / "poller.yaml"
    config.write_text(
        "tenant: acme-corp\n"
        f"source: {{url: 'sqlite:///{tmp_path}/x.db'}}\n"
        "kafka:\n"
        "  format: single_object\n"
        "  bootstrap_servers: 127.0.0.1:1\n"
        f"  options: {{security.protocol: SSL, ssl.ca.location: '{not_pem}'}}\n"
        "entities:\n"
        "  customers: {table: people, key: id, fields: {local_id: id, first_name: f_name},\n"
        "              batching: {mode: id, column: id}}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "run", "--once", "--config", str(config)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "kafka.options: Failed to create" in proc.stderr
    assert "ssl.ca.location failed" in proc.stderr


PG = "postgresql+psycopg2://poller@db.example/crm"


def test_source_tls_files_without_require_tls_are_refused_not_ignored(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / n for n in ("ca.pem", "client.pem", "client.key"))
    for f in (ca, cert, key):
        f.write_text("-----BEGIN-----\n")
    files = {"tls_ca_file": str(ca), "tls_cert_file": str(cert), "tls_key_file": str(key)}
    with pytest.raises(ConfigError) as info:
        parse_config(app({}, {"url": PG, **files}))
    assert [p.split(":")[0] for p in info.value.problems] == [
        "source.tls_ca_file", "source.tls_cert_file", "source.tls_key_file",
    ]  # fmt: skip
    assert all("read only with source.require_tls: true" in p for p in info.value.problems)
    for required in (True, "true", "yes"):  # also as a ${REF} resolves: a string
        cfg = parse_config(app({}, {"url": PG, "require_tls": required, **files}))
        assert cfg.source.require_tls is True
    with pytest.raises(ConfigError) as info:
        parse_config(app({}, {"url": PG, "require_tls": "false", "tls_ca_file": str(ca)}))
    assert [p.split(":")[0] for p in info.value.problems] == ["source.tls_ca_file"]


def test_source_tls_files_are_checked_at_load(tmp_path: Path) -> None:
    source = {
        "url": PG,
        "require_tls": True,
        "tls_ca_file": str(tmp_path),  # a directory: libpq and PyMySQL read a PEM file
        "tls_key_file": str(tmp_path / "no.key"),
    }
    with pytest.raises(ConfigError) as info:
        parse_config(app({}, source))
    assert info.value.problems == [
        "source.tls_key_file: set source.tls_cert_file too (its certificate)",
        f"source.tls_ca_file: '{tmp_path}' is a directory, not a file",
        f"source.tls_key_file: no such file '{tmp_path}/no.key'",
    ]
