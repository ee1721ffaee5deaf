"""The registry's TLS settings without a registry: CA, client certificate and key files checked
when the configuration is loaded (every problem named with its field and path), the warning for
credentials over http://, and which TLS failures are named rather than retried."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest

from poller.avro.registry import Registry
from poller.avro.registry_tls import tls_failure
from poller.config import SchemaRegistryConfig, parse_config
from poller.errors import ConfigError


def base(registry: dict[str, Any]) -> dict[str, Any]:
    return {
        "tenant": "acme-corp",
        "source": {"url": "sqlite:///x.db"},
        "schema_registry": registry,
        "entities": {"customers": {"table": "people", "key": "id",
                                   "fields": {"local_id": "id", "first_name": "f_name"},
                                   "batching": {"mode": "id", "column": "id"}}},
    }  # fmt: skip


def test_missing_tls_files_are_config_errors_naming_each_field_and_path(tmp_path: Path) -> None:
    options = {
        "ssl.ca.location": str(tmp_path / "no-ca.pem"),
        "ssl.certificate.location": str(tmp_path),  # a directory
        "ssl.key.location": str(tmp_path / "no-client.key"),
    }
    raw = base({"url": "https://sr:8081", "options": options, "compatibility": "SOMETIMES"})
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    problems = info.value.problems
    text = "\n".join(problems)
    assert f"schema_registry.options.ssl.ca.location: no such file '{tmp_path}/no-ca.pem'" in text
    assert f"schema_registry.options.ssl.certificate.location: '{tmp_path}' is a directory" in text
    assert "schema_registry.options.ssl.key.location: no such file" in text
    assert "schema_registry.compatibility" in text  # listed together with the others
    # `poller acl` and `tenants put` inspect a configuration that may run on another host.
    with pytest.raises(ConfigError) as info:
        parse_config(raw, check_files=False)
    assert not any("ssl." in p for p in info.value.problems)


def test_a_key_without_its_certificate_is_a_config_error(tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_text("not checked here\n")
    raw = base({"url": "https://sr:8081", "options": {"ssl.key.location": str(key)}})
    with pytest.raises(ConfigError, match=r"ssl.key.location: set ssl.certificate.location"):
        parse_config(raw)


def test_existing_tls_files_and_verification_off_load(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert parse_config(base({"url": "https://sr:8081", "options": {"ssl.ca.location": str(ca)}}))
    assert parse_config(base({"url": "https://sr:8081", "options": {"ssl.ca.location": False}}))


def test_credentials_over_http_warn_once_naming_the_url_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    plain = SchemaRegistryConfig.model_validate(
        {
            "url": "http://sr-plain.example:8081/apis/ccompat/v7",
            "basic_auth": {"user": "poller", "password": "Sup3rS3cret"},
        }
    )
    in_url = SchemaRegistryConfig(url="http://u:Sup3rS3cret@sr-url.example:8081")
    tls = SchemaRegistryConfig.model_validate(
        {
            "url": "https://sr-tls.example:8081",
            "basic_auth": {"user": "poller", "password": "Sup3rS3cret"},
        }
    )
    nothing = SchemaRegistryConfig(url="http://sr-anon.example:8081")
    with caplog.at_level(logging.WARNING):
        for cfg in (plain, plain, in_url, tls, nothing):
            Registry(cfg).close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "schema registry http://sr-plain.example:8081/apis/ccompat/v7: credentials are sent "
        "unencrypted over http://; use https:// (docs/security.md: The schema registry over "
        "HTTPS)",
        "schema registry http://u:***@sr-url.example:8081: credentials are sent unencrypted "
        "over http://; use https:// (docs/security.md: The schema registry over HTTPS)",
    ]
    assert "Sup3rS3cret" not in caplog.text


def _wrapped(cause: BaseException) -> Exception:
    """An error as the HTTP client raises it (httpx2's ConnectError): the SSL error inside."""
    try:
        try:
            raise cause
        except BaseException as inner:
            raise ConnectionError(str(inner)) from inner
    except ConnectionError as outer:
        return outer


def test_tls_failures_are_named_network_errors_are_not() -> None:
    cfg = SchemaRegistryConfig(url="https://sr:8081", options={"ssl.ca.location": "/ca.pem"})
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    told = tls_failure(_wrapped(verify), cfg)
    assert told is not None and "ssl.ca.location (/ca.pem)" in told
    required = ssl.SSLError(1, "[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert")
    told = tls_failure(_wrapped(required), cfg)
    assert told is not None and "requires a TLS client certificate and none" in told
    with_cert = SchemaRegistryConfig(
        url="https://sr:8081", options={"ssl.certificate.location": "/c.pem"}
    )
    unknown = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    told = tls_failure(_wrapped(unknown), with_cert)
    assert told is not None and "refused the TLS client certificate /c.pem" in told
    assert tls_failure(_wrapped(ConnectionRefusedError(111, "refused")), cfg) is None
