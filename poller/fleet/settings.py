"""The worker's configuration (`poller worker --config worker.yaml`) and the checks a tenant's
configuration passes before it is stored in the tenants topic.

A tenant's configuration is stored as its operator wrote it: `${ENV}` and `${file:...}`
references stay references and are resolved by the tenant's process on the worker, so a
resolved secret never travels through Kafka. `put` therefore refuses literal secrets.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.engine import make_url

from poller.config import (
    _CLIENT_OPTION_PREFIXES,
    KAFKA_FILE_OPTIONS,
    AppConfig,
    KafkaConfig,
    LoggingConfig,
    MetricsConfig,
    format_problems,
    option_file_problems,
    parse_config,
    resolve_references,
)
from poller.config.base import SECRET_OPTION
from poller.errors import ConfigError
from poller.yamlfile import parse_yaml, read_yaml

_REFERENCE = re.compile(r"\$\{[^}]*\}")
# librdkafka options that hold secrets: only references may be stored. The model holds the
# same keys as secrets (SECRET_OPTION), plus inline PEM keys.
_SECRET_OPTIONS = re.compile(SECRET_OPTION.pattern + r"|\.key\.pem$", re.IGNORECASE)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RestartConfig(_Model):
    initial_backoff_s: float = Field(1, gt=0, description="first wait before restarting a child")
    max_backoff_s: float = Field(60, gt=0, description="the wait doubles up to this")
    healthy_after_s: float = Field(60, gt=0, description="a child up this long resets backoff")


class TenantSecrets(_Model):
    """Each tenant references only its own secrets (see poller.fleet.scoping)."""

    file_dir: str = Field(
        description="a tenant's ${file:...} must lie under this directory; {tenant} is the "
        "tenant id, e.g. /run/secrets/poller/{tenant}",
        examples=["/run/secrets/poller/{tenant}"],
    )
    allow_env: list[str] = Field(
        default_factory=list,
        description="environment variables every tenant may reference and its child gets "
        "(none by default)",
    )

    @field_validator("file_dir")
    @classmethod
    def _dir(cls, v: str) -> str:
        if not v.startswith("/") or "{tenant}" not in v:
            raise ValueError("an absolute directory with {tenant} in it")
        return v


class WorkerConfig(_Model):
    kafka: KafkaConfig = Field(
        default_factory=KafkaConfig, description="the cluster of the tenants topic and group"
    )
    group: str = Field("poller-workers", min_length=1, description="consumer group of the fleet")
    protocol: Literal["classic", "consumer"] = Field(
        "classic", description="group protocol: classic or consumer (KIP-848)"
    )
    instance_id: str | None = Field(
        None,
        description="group.instance.id (static membership); default $HOSTNAME in Kubernetes",
        examples=["poller-worker-0"],
    )
    max_tenants: int = Field(50, ge=1, description="most tenant processes on this worker")
    session_timeout_s: float = Field(10, ge=1, description="classic protocol only")
    heartbeat_interval_s: float = Field(1, gt=0, description="classic protocol only")
    tenants_topic: str = Field(
        "{prefix}.tenants", description="compacted topic of tenant configurations; {prefix}"
    )
    status_topic: str = Field(
        "{prefix}.tenant_status",
        description="compacted topic where workers write each tenant's state (tenants list)",
    )
    tenants_partitions: int = Field(24, ge=1, description="when the worker creates the topic")
    stop_timeout_s: float = Field(30, gt=0, description="SIGTERM to SIGKILL for a child")
    restart: RestartConfig = Field(
        default_factory=RestartConfig, description="restarting a failed child"
    )
    tenant_secrets: TenantSecrets | None = Field(
        None,
        description="restrict each tenant to its own secrets and give its child a filtered "
        "environment; unset: a tenant may reference any variable or file of the worker",
        examples=[{"file_dir": "/run/secrets/poller/{tenant}", "allow_env": ["TZ"]}],
    )
    state_dir: str | None = Field(
        None,
        description="children's configs and query slots; default: a temporary directory",
        examples=["/var/lib/poller"],
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="the worker's HTTP endpoint"
    )
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="log output")

    @field_validator("tenants_topic", "status_topic")
    @classmethod
    def _topic(cls, v: str) -> str:
        try:
            v.format(prefix="p")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"only {{prefix}} may appear ({exc})") from exc
        return v

    def tenants_topic_name(self) -> str:
        return self.tenants_topic.format(prefix=self.kafka.topic_prefix)

    def status_topic_name(self) -> str:
        return self.status_topic.format(prefix=self.kafka.topic_prefix)

    def member_instance_id(self) -> str | None:
        """Static membership: the configured id, else the pod name under Kubernetes (stable in
        a StatefulSet), else none (a dynamic member leaves the group at once when it stops)."""
        if self.instance_id:
            return self.instance_id
        if os.environ.get("KUBERNETES_SERVICE_HOST") and os.environ.get("HOSTNAME"):
            return os.environ["HOSTNAME"]
        return None

    def worker_name(self) -> str:
        return self.member_instance_id() or f"{socket.gethostname()}-{os.getpid()}"


def load_worker_config(path: str | None, overrides: dict[str, Any]) -> WorkerConfig:
    """The worker's YAML (optional) with the command line's overrides on top; every problem
    listed at once."""
    raw: Any = {}
    source = path or "worker configuration"
    if path is not None:
        raw, unreadable = read_yaml(Path(path))  # UTF-8, no duplicate keys
        if unreadable:
            raise ConfigError(unreadable, path)
        raw = raw or {}
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping"], source)
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    problems: list[str] = []
    expanded = resolve_references(raw, problems)
    cfg: WorkerConfig | None = None
    try:
        cfg = WorkerConfig.model_validate(expanded)
    except ValidationError as err:
        problems.extend(format_problems(err, WorkerConfig))
    kafka = expanded.get("kafka") if isinstance(expanded, dict) else None
    options = kafka.get("options") if isinstance(kafka, dict) else None
    problems.extend(option_file_problems("kafka.options", options, KAFKA_FILE_OPTIONS))
    # The worker's clients take only the connection and security options; any other would be
    # dropped without a word (tenants' producer options belong in their own configurations).
    problems.extend(
        f"kafka.options.{k}: not used by the worker, whose clients take only connection and "
        f"security options ({', '.join(p + '*' for p in _CLIENT_OPTION_PREFIXES)}); a tenant's "
        "producer options go in its own configuration"
        for k in (options if isinstance(options, dict) else {})
        if not str(k).startswith(_CLIENT_OPTION_PREFIXES)
    )
    if problems or cfg is None:
        raise ConfigError(problems, source)
    return cfg


# ------------------------------------------------------------------------------ tenants


def _placeholders(node: Any) -> Any:
    """Every reference replaced by a harmless stand-in, to validate the structure where the
    secrets do not exist (the operator's machine)."""
    if isinstance(node, dict):
        return {k: _placeholders(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_placeholders(v) for v in node]
    if isinstance(node, str):
        return _REFERENCE.sub("secret", node)
    return node


def literal_secrets(raw: dict[str, Any]) -> list[str]:
    """Secrets written out instead of referenced: a password in source.url, or a secret
    librdkafka option."""
    problems: list[str] = []
    source = raw.get("source")
    url = source.get("url") if isinstance(source, dict) else None
    if isinstance(url, str):
        try:
            password = make_url(_REFERENCE.sub("ref", url)).password
        except Exception:  # the structural check reports a broken URL
            password = None
        if password and password != "ref":
            problems.append(
                "source.url: the password is written out; use ${ENV} or ${file:...} (it is "
                "stored in Kafka as written)"
            )
    kafka = raw.get("kafka")
    options = kafka.get("options") if isinstance(kafka, dict) else None
    if isinstance(options, dict):
        for key, value in options.items():
            if _SECRET_OPTIONS.search(str(key)) and not (
                isinstance(value, str) and _REFERENCE.fullmatch(value.strip())
            ):
                problems.append(f"kafka.options.{key}: write it as ${{ENV}} or ${{file:...}}")
    return problems + _more_literal_secrets(raw)


_SECRET_KEY = SECRET_OPTION
_URL_SECRET = re.compile(r"(?i)[?&;]([\w.-]*(?:password|passwd|pwd|secret|token)[\w.-]*)=([^&;]*)")


def _more_literal_secrets(raw: dict[str, Any]) -> list[str]:
    """Issue 17: every other literal secret `tenants put` would store in Kafka: a secret-like
    key anywhere (schema_registry.basic_auth.password, *.options bearer tokens, ...), a
    secret query parameter in any URL (?password=, sslpassword=, wallet_password=, ...) and a
    password in the registry URL's user info."""
    problems: list[str] = []

    def literal(value: object) -> bool:
        return not (isinstance(value, str) and _REFERENCE.fullmatch(value.strip()))

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                where = f"{path}.{key}" if path else str(key)
                if where.startswith("kafka.options."):
                    continue  # checked above
                if _SECRET_KEY.search(str(key)) and not isinstance(value, dict | list):
                    if value is not None and literal(value):
                        problems.append(f"{where}: write it as ${{ENV}} or ${{file:...}}")
                    continue
                walk(value, where)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")
        elif isinstance(node, str):
            for m in _URL_SECRET.finditer(_REFERENCE.sub("ref", node)):
                if m.group(2) not in ("", "ref"):
                    problems.append(
                        f"{path}: the URL's {m.group(1)} is written out; use ${{ENV}} or "
                        "${file:...} (it is stored in Kafka as written)"
                    )
            if path == "schema_registry.url" and re.search(
                r"//[^/@:]*:(?!ref@)[^/@]+@", _REFERENCE.sub("ref", node)
            ):
                problems.append(f"{path}: the password is written out; use ${{ENV}} or basic_auth")

    walk(raw, "")
    return problems


def parse_tenant_text(text: str, source: str, *, strict: bool) -> tuple[dict[str, Any], str]:
    """A tenant's configuration text -> (raw mapping, tenant id). Checked without resolving its
    references; `strict` (for `tenants put`) also refuses literal secrets."""
    raw, syntax = parse_yaml(text, source)  # no duplicate keys
    if syntax:
        raise ConfigError(syntax, source)
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping"], source)
    problems = literal_secrets(raw) if strict else []
    try:
        cfg: AppConfig = parse_config(_placeholders(raw), source, check_files=False)
    except ConfigError as exc:
        raise ConfigError([*problems, *exc.problems], source) from None
    if problems:
        raise ConfigError(problems, source)
    return raw, cfg.tenant


def child_config_text(raw: dict[str, Any], metrics_port: int) -> str:
    """The tenant's configuration as its child process runs it: unchanged but for the metrics
    server, which listens on loopback on a port the worker picked (the worker serves it on)."""
    out = dict(raw)
    out["metrics"] = {"enabled": True, "host": "127.0.0.1", "port": metrics_port}
    return yaml.safe_dump(out, sort_keys=False, allow_unicode=True)
