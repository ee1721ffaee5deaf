"""What each driver is told when `source.require_tls` is set (SQL Server and Oracle: never run
against a live server here), and the warning for a plaintext connection to another host."""

from __future__ import annotations

import logging
import ssl
from types import SimpleNamespace

import pytest
from sqlalchemy.engine import make_url

from poller.config import SourceConfig
from poller.errors import ConfigError
from poller.source.tls import EncryptionCheck, connect_args


def src(url: str, **kw: object) -> SourceConfig:
    return SourceConfig.model_validate({"url": url, **kw})


def test_nothing_changes_unless_tls_is_required() -> None:
    for url in ("postgresql+psycopg2://u@h/d", "mysql+pymysql://u@h/d", "mssql+pyodbc://u@dsn"):
        assert connect_args(make_url(url).get_backend_name(), src(url)) == {}


def test_each_driver_is_told_to_encrypt_and_verify() -> None:
    ca = {"require_tls": True, "tls_ca_file": "/etc/ca.pem"}
    assert connect_args("postgresql", src("postgresql+psycopg2://u@h/d", **ca)) == {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ca.pem",
    }
    assert connect_args("postgresql", src("postgresql+psycopg2://u@h/d", require_tls=True)) == {
        "sslmode": "verify-full",
        "sslrootcert": "system",
    }
    assert connect_args("mysql", src("mysql+pymysql://u@h/d", **ca)) == {
        "ssl_verify_cert": True,
        "ssl_verify_identity": True,
        "ssl_ca": "/etc/ca.pem",
    }
    assert connect_args("mssql", src("mssql+pyodbc://u@dsn", require_tls=True)) == {
        "Encrypt": "yes",
        "TrustServerCertificate": "no",
    }
    oracle = connect_args("oracle", src("oracle+oracledb://u@h/s", require_tls=True))
    assert oracle["protocol"] == "tcps" and oracle["ssl_server_dn_match"] is True
    assert isinstance(oracle["ssl_context"], ssl.SSLContext)
    assert oracle["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    with pytest.raises(ConfigError, match="local file"):
        connect_args("sqlite", src("sqlite:///x.db", require_tls=True))


def _pg_conn(encrypted: bool) -> object:
    return SimpleNamespace(info=SimpleNamespace(ssl_in_use=encrypted))


def test_plaintext_to_another_host_is_a_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    url = make_url("postgresql+psycopg2://u:pw@db.example:5432/d")
    check = EncryptionCheck("postgresql", src(url.render_as_string(False)), url)
    with caplog.at_level(logging.WARNING):
        check(_pg_conn(False))
        check(_pg_conn(False))
        check(_pg_conn(True))
    warnings = [r for r in caplog.records if "not encrypted" in r.getMessage()]
    assert len(warnings) == 1 and "db.example:5432" in warnings[0].getMessage()
    local = make_url("postgresql+psycopg2://u:pw@127.0.0.1:5432/d")
    caplog.clear()
    EncryptionCheck("postgresql", src(local.render_as_string(False)), local)(_pg_conn(False))
    assert not caplog.records  # loopback: nothing crosses a network


def test_required_tls_refuses_a_plaintext_session() -> None:
    url = make_url("postgresql+psycopg2://u:pw@db.example/d")
    check = EncryptionCheck("postgresql", src(url.render_as_string(False), require_tls=True), url)
    check(_pg_conn(True))
    with pytest.raises(ConfigError, match=r"db\.example:default port is not encrypted"):
        check(_pg_conn(False))
