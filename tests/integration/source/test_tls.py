"""Issue 17 item 5: TLS to the databases. `scripts/services` serves PostgreSQL and MariaDB with
a certificate of its own local CA; with `source.require_tls` the poller connects only encrypted,
to a server whose certificate chains to `source.tls_ca_file` and names the host, and refuses a
plaintext server or a certificate it cannot verify, with the cause."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pymysql
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from poller.config import SourceConfig
from poller.errors import ConfigError
from poller.source.engine import make_engine
from poller.source.tls import EncryptionCheck
from tests.integration.conftest import REPO_ROOT
from tests.integration.faults.own_postgres import DedicatedPostgres

pytestmark = pytest.mark.integration

STACK = Path(os.environ.get("POLLER_STACK_HOME", Path.home() / ".cache" / "poller-stack"))
CA = STACK / "tls" / "ca.pem"


@pytest.fixture(scope="module")
def stack_ca() -> Path:
    if not CA.is_file():
        pytest.fail(f"{CA} missing: start the databases with `scripts/services up`", pytrace=False)
    return CA


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed nothing the servers present."""
    d = tmp_path_factory.mktemp("other-ca")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=someone else", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return d / "ca.pem"


def _source(url: str, **tls: object) -> SourceConfig:
    return SourceConfig.model_validate({"url": url, **tls})


def _session_encrypted(url: str, ca: Path) -> str:
    engine = make_engine(_source(url, require_tls=True, tls_ca_file=str(ca)))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                sql = "SELECT version FROM pg_stat_ssl WHERE pid = pg_backend_pid() AND ssl"
            else:
                sql = "SELECT variable_value FROM information_schema.session_status " \
                      "WHERE variable_name = 'Ssl_version'"  # fmt: skip
            return str(conn.execute(sa.text(sql)).scalar_one())
    finally:
        engine.dispose()


def test_postgresql_verified_tls(pg_url: str, stack_ca: Path, other_ca: Path) -> None:
    assert _session_encrypted(pg_url, stack_ca).startswith("TLSv1.")
    engine = make_engine(_source(pg_url, require_tls=True, tls_ca_file=str(other_ca)))
    with pytest.raises(sa.exc.OperationalError, match="certificate verify failed"):
        engine.connect()
    engine.dispose()
    # the certificate names 127.0.0.1 and localhost; another name for the host is refused
    other_name = make_url(pg_url).set(host="127.0.0.2")
    engine = make_engine(_source(other_name.render_as_string(False), require_tls=True,
                                 tls_ca_file=str(stack_ca)))  # fmt: skip
    with pytest.raises(sa.exc.OperationalError, match=r"does not match host name|127\.0\.0\.2"):
        engine.connect()
    engine.dispose()


def test_postgresql_without_tls_is_refused_when_required(stack_ca: Path) -> None:
    pg = DedicatedPostgres()
    try:
        pg.create()
        subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-p", str(pg.port), "-qc",
             "ALTER SYSTEM SET ssl = off"], check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        pg.stop()
        pg.start()
        plain = make_engine(_source(pg.url))
        with plain.connect() as conn:  # it does serve plaintext
            assert conn.execute(sa.text("SHOW ssl")).scalar_one() == "off"
        plain.dispose()
        engine = make_engine(_source(pg.url, require_tls=True, tls_ca_file=str(stack_ca)))
        with pytest.raises(sa.exc.OperationalError, match="does not support SSL"):
            engine.connect()
        engine.dispose()
    finally:
        pg.drop()


def test_mariadb_verified_tls(mariadb_url: str, stack_ca: Path, other_ca: Path) -> None:
    assert _session_encrypted(mariadb_url, stack_ca).startswith("TLSv1.")
    engine = make_engine(_source(mariadb_url, require_tls=True, tls_ca_file=str(other_ca)))
    with pytest.raises(sa.exc.OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        engine.connect()
    engine.dispose()


def test_a_plaintext_session_is_refused_when_tls_is_required(mariadb_url: str) -> None:
    """The check after connecting: a driver that fell back to plaintext (or a proxy that
    strips TLS) is refused, whatever the driver was asked for."""
    url = make_url(mariadb_url)
    conn = pymysql.connect(
        host=url.host, port=url.port or 3306, user=url.username, password=url.password,
        database=url.database, ssl_disabled=True,
    )  # fmt: skip
    try:
        check = EncryptionCheck("mariadb", _source(mariadb_url, require_tls=True), url)
        with pytest.raises(ConfigError, match="not encrypted"):
            check(conn)
    finally:
        conn.close()


def test_check_names_an_unverifiable_database(pg_url: str, other_ca: Path, tmp_path: Path) -> None:
    """`poller check` says why it cannot reach a database whose certificate it cannot verify."""
    config = {
        "tenant": "t",
        "source": {"url": pg_url, "require_tls": True, "tls_ca_file": str(other_ca)},
        "kafka": {"bootstrap_servers": "127.0.0.1:9092", "format": "single_object"},
        "entities": {
            "customers": {
                "table": "customers",
                "key": "id",
                "fields": {"local_id": "id"},
                "batching": {"mode": "id", "column": "id"},
            }
        },
    }
    path = tmp_path / "poller.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "check", "--config", str(path)],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "certificate verify failed" in out, out
    assert "poller:***@" in out and "poller:poller@" not in out, out  # the password hidden
