"""`source:`: the database a tenant's rows are read from."""

from __future__ import annotations

import zoneinfo
from typing import Literal

from pydantic import Field, field_serializer, field_validator
from sqlalchemy.engine import make_url

from poller.config.base import (
    _Model,
    check_identifier,
)
from poller.config.drivers import with_driver
from poller.redaction import redact


class SourceConfig(_Model):
    url: str = Field(
        repr=False,  # it may hold a password; repr shows nothing, dumps the redacted URL
        description="SQLAlchemy URL; put the password in ${ENV} or ${file:...}",
        examples=["postgresql+psycopg2://crm:${CRM_PASSWORD}@db.example:5432/crm"],
    )
    tenant_column: str | None = Field(
        None,
        description="column telling tenants apart when several share one database; always "
        "bound (WHERE col = :tenant)",
        examples=["user_id"],
    )
    timezone: str = Field("UTC", description="zone of naive timestamps in the database")
    statement_timeout_s: float = Field(
        300, gt=0, description="longest a batch query may run (seconds)"
    )
    connect_timeout_s: float = Field(
        10, gt=0, description="longest a connection attempt may take (seconds)"
    )
    drift_check_interval_s: float = Field(300, ge=0, description="re-check the mapping; 0: never")
    horizon: Literal["transactions", "settle"] | None = Field(
        None,
        description="transactions: read only rows no open transaction can still write behind "
        "(needs pg_read_all_stats / PROCESS ...; falls back to settle); settle: settle_delay_s. "
        "Default: transactions, but settle on SQL Server and Oracle (not tested live; "
        "docs/horizon-dialects.md)",
        examples=["settle"],
    )
    max_concurrent_queries: int | None = Field(
        None,
        ge=1,
        description="cap across the tenants of this database on one worker",
        examples=[4],
    )
    max_rows_per_second: float | None = Field(
        None, gt=0, description="this tenant's read rate (rows per second)", examples=[5000]
    )
    require_tls: bool = Field(
        False,
        description="refuse any connection that is not encrypted with a verified server "
        "certificate naming the host (PostgreSQL sslmode=verify-full, MySQL/MariaDB verified "
        "identity, SQL Server Encrypt=yes, Oracle TCPS); without it the driver's default "
        "applies (libpq's `prefer` falls back to plaintext) and the poller warns when a "
        "connection to another host is not encrypted",
    )
    tls_ca_file: str | None = Field(
        None,
        description="PEM file of the CA(s) that signed the database's certificate; default: "
        "the system's trusted CAs. Read only with require_tls (refused without it)",
        examples=["/etc/poller/db-ca.pem"],
    )
    tls_cert_file: str | None = Field(
        None,
        description="client certificate (PEM) for databases that require one; with require_tls",
        examples=["/etc/poller/db-client.pem"],
    )
    tls_key_file: str | None = Field(
        None,
        description="private key (PEM) of tls_cert_file",
        examples=["/etc/poller/db-client.key"],
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        try:
            url = make_url(v)
        except Exception as exc:  # SQLAlchemy raises ArgumentError with the URL in it
            raise ValueError(
                "not a valid SQLAlchemy URL (value hidden: it may hold a password)"
            ) from exc
        try:  # the dialect and its driver module, so `foo://` fails here, not in a traceback
            with_driver(url).get_dialect().import_dbapi()
        except Exception as exc:  # NoSuchModuleError, ImportError; neither holds the URL
            raise ValueError(
                f"database {url.drivername!r} cannot be used ({type(exc).__name__}: {exc}); "
                "e.g. postgresql+psycopg2, mysql+pymysql, mssql+pyodbc, oracle+oracledb, sqlite"
            ) from None
        # Named at load, not after retry.startup_timeout_s of "cannot connect".
        if url.port is not None and not 1 <= url.port <= 65535:
            raise ValueError(f"port {url.port} is not a TCP port (1-65535)")
        return v

    @field_validator("tenant_column")
    @classmethod
    def _tenant_column(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier(v, "tenant_column")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {v!r} (use an IANA name like Europe/Berlin)"
            ) from exc
        return v

    @field_serializer("url")
    def _dump_url(self, _url: str) -> str:
        return self.safe_url

    @property
    def safe_url(self) -> str:
        """The URL to show: password hidden, also in the query (`?password=`, odbc_connect)."""
        return redact(make_url(self.url).render_as_string(hide_password=True))
