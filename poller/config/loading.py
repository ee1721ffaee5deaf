"""YAML in, a validated `AppConfig` out, or one `ConfigError` listing every problem with its path;
`${NAME}` and `${file:/path}` references resolved."""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.engine import make_url

from poller.config.app import (
    AppConfig,
)
from poller.config.base import (
    _PLACEHOLDER,
)
from poller.config.catalog import ENTITIES, entity_fields
from poller.errors import ConfigError
from poller.yamlfile import read_yaml


def _expand(node: Any, path: str, problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{path}[{i}]", problems) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def sub(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref.startswith("file:"):
            try:
                return Path(ref[5:]).read_text(encoding="utf-8").rstrip("\n")
            except OSError as exc:
                problems.append(f"{path}: cannot read secret file {ref[5:]!r}: {exc.strerror}")
                return ""
            except UnicodeDecodeError:
                problems.append(f"{path}: secret file {ref[5:]!r} is not UTF-8 text")
                return ""
        if ref not in os.environ:
            problems.append(f"{path}: environment variable {ref} is not set")
            return ""
        return os.environ[ref]

    return _PLACEHOLDER.sub(sub, node)


def resolve_references(node: Any, problems: list[str]) -> Any:
    """`node` with every `${ENV}` / `${file:...}` replaced; what cannot be resolved is added to
    `problems` with its path (for configurations other than a tenant's, e.g. the worker's)."""
    return _expand(node, "", problems)


def format_problems(err: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    """A pydantic error as `path: message` lines (`model`: to suggest keys for unknown ones)."""
    return _format_pydantic(err, model)


def _known_keys(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the section at `loc` accepts (a mapping of sections, like `entities`, is
    walked through its names); none when `loc` is not a section."""
    node: type[BaseModel] | None = model
    via_dict = False
    for part in loc:
        if node is None:
            return []
        if via_dict:  # the name in `entities.<name>`
            via_dict = False
            continue
        field = node.model_fields.get(str(part))
        if field is None:
            return []
        via_dict = typing.get_origin(field.annotation) is dict
        args = typing.get_args(field.annotation)
        candidates = (field.annotation, *(args[1:] if via_dict else args))
        node = next(
            (a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)), None
        )
    return [] if node is None or via_dict else list(node.model_fields)


def _format_pydantic(err: ValidationError, model: type[BaseModel] | None = None) -> list[str]:
    out = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and model is not None:
            known = _known_keys(model, tuple(e["loc"][:-1]))
            close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1, cutoff=0.6)
            msg = (
                f"unknown key; did you mean {close[0]!r}?"
                if close
                else (f"unknown key (known here: {', '.join(known)})" if known else msg)
            )
        out.append(f"{loc}: {msg}")
    return out


def _schema_problems(raw: Mapping[str, Any]) -> list[str]:
    """Entity names and field mappings checked against `schemas/`, on the raw dict so these
    problems are listed together with the structural ones."""
    problems: list[str] = []
    entities = raw.get("entities")
    if not isinstance(entities, dict):
        return problems
    for name, ent in entities.items():
        if name not in ENTITIES:
            close = difflib.get_close_matches(str(name), list(ENTITIES), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"entities.{name}: unknown entity ({hint}known: {', '.join(ENTITIES)})")
            continue
        fields = ent.get("fields") if isinstance(ent, dict) else None
        if not isinstance(fields, dict):
            continue
        names, required = entity_fields(name)
        for f in fields:
            if f not in names:
                problems.append(
                    f"entities.{name}.fields.{f}: not a field of schema {name} "
                    f"(fields: {', '.join(names)})"
                )
        for f in sorted(required - set(fields)):
            problems.append(f"entities.{name}.fields: required field {f!r} is not mapped")
    return problems


# Options naming files a client reads: confluent-kafka's registry client, and librdkafka's.
REGISTRY_FILE_OPTIONS = ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location")
KAFKA_FILE_OPTIONS = (
    *REGISTRY_FILE_OPTIONS,
    "ssl.crl.location",
    "ssl.keystore.location",
    "sasl.kerberos.keytab",
)
_NOT_A_PATH = {"probe"}  # librdkafka's ssl.ca.location: probe searches the system's CA paths


def option_file_problems(where: str, options: Any, keys: Sequence[str]) -> list[str]:
    """The files named by `options` (a client's extra options, at `where`): each must exist and
    be readable, checked at load so a wrong path is named with the other problems (not a
    client's traceback later). A CA may be a directory (capath)."""
    if not isinstance(options, dict):
        return []
    problems: list[str] = []
    for key in keys:
        value = options.get(key)
        if not isinstance(value, str) or not value or value in _NOT_A_PATH:
            continue  # registry ssl.ca.location: false turns verification off
        at, path = f"{where}.{key}", Path(value)
        if not path.exists():
            problems.append(f"{at}: no such file {value!r}")
        elif path.is_dir() and key != "ssl.ca.location":
            problems.append(f"{at}: {value!r} is a directory, not a file")
        elif path.is_file():
            try:
                with path.open("rb") as f:
                    f.read(1)
            except OSError as exc:
                problems.append(f"{at}: cannot read {value!r}: {exc.strerror}")
    certificate = options.get("ssl.certificate.location") or options.get("ssl.certificate.pem")
    if options.get("ssl.key.location") and not certificate:
        problems.append(
            f"{where}.ssl.key.location: set ssl.certificate.location too "
            "(the client certificate of that key)"
        )
    return problems


_SOURCE_TLS_FILES = ("tls_ca_file", "tls_cert_file", "tls_key_file")


def _source_tls_problems(raw: Mapping[str, Any]) -> list[str]:
    """The source's TLS files are read only under `require_tls`: given without it they would be
    ignored without a word (libpq's `prefer` does not even read a CA), so say so."""
    source = raw.get("source")
    if not isinstance(source, dict):
        return []
    given = [k for k in _SOURCE_TLS_FILES if source.get(k)]
    problems = []
    try:  # as pydantic reads it: "true" from a ${REF} counts
        required = TypeAdapter(bool).validate_python(source.get("require_tls", False))
    except ValidationError:
        required = True  # not a boolean: pydantic names that; do not pile on
    if given and not required:
        problems += [
            f"source.{k}: read only with source.require_tls: true (which also verifies the "
            "server's certificate and host name); set it, or remove this"
            for k in given
        ]
    if source.get("tls_key_file") and not source.get("tls_cert_file"):
        problems.append("source.tls_key_file: set source.tls_cert_file too (its certificate)")
    return problems


def _file_problems(raw: Mapping[str, Any]) -> list[str]:
    registry, kafka, source = raw.get("schema_registry"), raw.get("kafka"), raw.get("source")
    return [
        *option_file_problems(
            "source",
            source if isinstance(source, dict) else None,
            _SOURCE_TLS_FILES,
        ),
        *option_file_problems(
            "kafka.options",
            kafka.get("options") if isinstance(kafka, dict) else None,
            KAFKA_FILE_OPTIONS,
        ),
        *option_file_problems(
            "schema_registry.options",
            registry.get("options") if isinstance(registry, dict) else None,
            REGISTRY_FILE_OPTIONS,
        ),
        *_sqlite_problems(source.get("url") if isinstance(source, dict) else None),
    ]


def _sqlite_problems(url: object) -> list[str]:
    """A SQLite file in a directory that does not exist cannot be opened (SQLite creates the
    file, not its directory): named at load, not after retry.startup_timeout_s."""
    try:
        parsed = make_url(url) if isinstance(url, str) else None
    except Exception:  # reported by SourceConfig's validator, without the URL
        return []
    if parsed is None or not parsed.drivername.startswith("sqlite"):
        return []
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file:") or parsed.query.get("uri"):
        return []  # in memory, or a URI filename SQLite parses itself
    parent = Path(db).expanduser().parent
    if parent.is_dir():
        return []
    return [f"source.url: the SQLite file {db!r} is in a directory that does not exist ({parent})"]


def parse_config(raw: Any, source: str = "configuration", *, check_files: bool = True) -> AppConfig:
    """`check_files=False` where the configuration is only inspected, possibly on another host
    than the one that runs it (`poller acl`, `tenants put`)."""
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping"], source)
    problems: list[str] = []
    expanded = _expand(raw, "", problems)
    cfg: AppConfig | None = None
    try:
        cfg = AppConfig.model_validate(expanded)
    except ValidationError as err:
        problems.extend(_format_pydantic(err, AppConfig))
    problems.extend(_schema_problems(expanded))
    problems.extend(_source_tls_problems(expanded))
    if check_files:
        problems.extend(_file_problems(expanded))
    if problems or cfg is None:
        raise ConfigError(problems, source)
    return cfg


def load_config(path: str | Path) -> AppConfig:
    """UTF-8 YAML without duplicate keys (see poller.yamlfile), then `parse_config`."""
    raw, problems = read_yaml(Path(path))
    if problems:
        raise ConfigError(problems, str(path))
    return parse_config(raw, str(path))
