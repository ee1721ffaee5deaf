"""`metrics:`, `logging:`, `retry:`: how a poller is watched and how it retries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from poller.config.base import (
    _Model,
)


class EndpointTLSConfig(_Model):
    cert_file: str = Field(
        description="PEM certificate (with its chain) the endpoints present",
        examples=["/etc/poller/tls/tls.crt"],
    )
    key_file: str = Field(
        description="PEM private key of `cert_file`", examples=["/etc/poller/tls/tls.key"]
    )
    client_ca_file: str | None = Field(
        None,
        description="require client certificates signed by this CA (mutual TLS)",
        examples=["/etc/poller/tls/prometheus-ca.pem"],
    )


class EndpointAuthConfig(_Model):
    user: str = Field(
        min_length=1, description="basic-auth user Prometheus sends", examples=["prometheus"]
    )
    password: SecretStr = Field(
        min_length=1,
        description="its password: write a reference (`${ENV}` or `${file:/path}`), never "
        "the password itself; held as a secret (never shown)",
        examples=["${file:/etc/poller/metrics-password}"],
    )


class MetricsConfig(_Model):
    host: str = Field(
        "127.0.0.1",
        description="address /metrics, /healthz and /readyz listen on: loopback by default; "
        "0.0.0.0 in a container, with a NetworkPolicy that admits only Prometheus and the kubelet",
    )
    port: int = Field(9400, ge=0, le=65535, description="their port (0: any free port)")
    enabled: bool = Field(True, description="serve the endpoints at all")
    tls: EndpointTLSConfig | None = Field(
        None, description="serve HTTPS instead of HTTP (like Prometheus' exporter web config)"
    )
    basic_auth: EndpointAuthConfig | None = Field(
        None, description="require HTTP basic auth on /metrics and /readyz (/healthz stays open)"
    )
    probe_interval_s: float = Field(
        5.0,
        gt=0,
        description="how often the readiness checks (database, Kafka) run in the background; "
        "/readyz answers from their last results, so a flood of requests never reaches the "
        "database",
    )


class LoggingConfig(_Model):
    format: Literal["text", "json"] = Field("text", description="json: one object per line")
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")


class RetryConfig(_Model):
    initial_backoff_s: float = Field(0.5, gt=0, description="first wait after a transient error")
    max_backoff_s: float = Field(30, gt=0, description="the wait doubles up to this")
    max_attempts: int = Field(0, ge=0, description="0 = retry transient errors forever")
    startup_timeout_s: float = Field(
        30, ge=0, description="how long to wait for the database and Kafka at start"
    )
