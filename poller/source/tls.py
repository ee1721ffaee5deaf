"""TLS to the source database.

With `source.require_tls` each driver is told to encrypt and to verify the server's certificate
and host name, and every new connection is then asked whether it really is encrypted (a driver
that quietly fell back to plaintext, a proxy in between): one that is not is refused. Without it
the driver's default applies (libpq's `sslmode=prefer` falls back to plaintext without a word),
and a connection to another host that turns out unencrypted is logged once as a warning.

SQL Server and Oracle settings are built and unit-tested here but were never run against a live
server (none can run on the test machine).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import ssl
from typing import Any

from sqlalchemy.engine import URL

from poller.config import SourceConfig
from poller.errors import ConfigError

log = logging.getLogger(__name__)


def connect_args(backend: str, source: SourceConfig) -> dict[str, Any]:
    """What the driver needs to encrypt and verify (nothing when TLS is not required)."""
    if not source.require_tls:
        return {}
    ca, cert, key = source.tls_ca_file, source.tls_cert_file, source.tls_key_file
    if backend == "postgresql":  # libpq
        args: dict[str, Any] = {"sslmode": "verify-full", "sslrootcert": ca or "system"}
        if cert:
            args |= {"sslcert": cert, "sslkey": key}
        return args
    if backend in ("mysql", "mariadb"):  # PyMySQL: any ssl_* option makes TLS required
        args = {"ssl_verify_cert": True, "ssl_verify_identity": True}
        if ca:
            args["ssl_ca"] = ca
        if cert:
            args |= {"ssl_cert": cert, "ssl_key": key}
        return args
    if backend == "mssql":  # pyodbc: appended to the ODBC connection string
        args = {"Encrypt": "yes", "TrustServerCertificate": "no"}
        if ca:
            args["ServerCertificate"] = ca  # ODBC Driver 18: pin the server's certificate
        return args
    if backend == "oracle":  # python-oracledb thin
        context = ssl.create_default_context(cafile=ca)
        if cert:
            context.load_cert_chain(cert, key)
        return {"protocol": "tcps", "ssl_server_dn_match": True, "ssl_context": context}
    raise ConfigError([f"source.require_tls: {backend} reads a local file; there is no connection"])


# Asks the server whether this session is encrypted; None where the driver says it directly.
_ENCRYPTED_SQL = {
    "mysql": "SHOW SESSION STATUS LIKE 'Ssl_cipher'",
    "mariadb": "SHOW SESSION STATUS LIKE 'Ssl_cipher'",
    "mssql": "SELECT encrypt_option FROM sys.dm_exec_connections WHERE session_id = @@SPID",
    "oracle": "SELECT SYS_CONTEXT('USERENV', 'NETWORK_PROTOCOL') FROM dual",
}


def is_encrypted(backend: str, dbapi_conn: Any) -> bool | None:
    """Whether the session is encrypted (None: not a network connection)."""
    if backend == "postgresql":
        return bool(dbapi_conn.info.ssl_in_use)
    sql = _ENCRYPTED_SQL.get(backend)
    if sql is None:
        return None
    with contextlib.closing(dbapi_conn.cursor()) as cur:
        cur.execute(sql)
        row = cur.fetchone()
    value = None if row is None else row[-1]
    if backend == "mssql":
        return str(value).upper() == "TRUE"
    if backend == "oracle":
        return str(value).lower() == "tcps"
    return bool(value)  # MySQL: the cipher's name, empty when plaintext


def on_local_host(url: URL) -> bool:
    host = url.host
    if not host or host == "localhost" or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EncryptionCheck:
    """Run on every new connection (the engine's connect hook)."""

    def __init__(self, backend: str, source: SourceConfig, url: URL) -> None:
        self.backend = backend
        self.require = source.require_tls
        self.where = f"{url.host or 'localhost'}:{url.port or 'default port'}"
        self.warn = not source.require_tls and not on_local_host(url)
        self.warned = False

    def __call__(self, dbapi_conn: Any) -> None:
        if not (self.require or self.warn):
            return
        encrypted = is_encrypted(self.backend, dbapi_conn)
        if encrypted is None or encrypted:
            return
        if self.require:
            raise ConfigError(
                [
                    f"source.require_tls: the connection to {self.where} is not encrypted; "
                    "enable TLS on the database server (or on the proxy in between)"
                ]
            )
        if not self.warned:
            self.warned = True
            log.warning(
                "the connection to the source database at %s is not encrypted: passwords and "
                "rows cross the network in plaintext; enable TLS there and set "
                "source.require_tls: true",
                self.where,
            )
