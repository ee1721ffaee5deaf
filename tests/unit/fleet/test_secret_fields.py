"""Secrets typed in the model and `tenants put` agree: every field typed SecretStr, and every
client option the model holds as a secret, is refused by `tenants put` when written out."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import SecretStr

from poller.cli.reference import leaves
from poller.config import AppConfig, KafkaConfig, SchemaRegistryConfig
from poller.fleet.settings import literal_secrets


def _secret_fields() -> list[str]:
    return [
        leaf.path
        for leaf in leaves(AppConfig)
        if leaf.annotation is SecretStr
        or (
            SecretStr in typing.get_args(leaf.annotation)
            and typing.get_origin(leaf.annotation) is not dict
        )
    ]


def _set(raw: dict[str, Any], path: str, value: str) -> None:
    *parents, last = path.split(".")
    for p in parents:
        raw = raw.setdefault(p, {})
    raw[last] = value


def test_every_secret_field_is_typed_and_refused_when_written_out() -> None:
    fields = _secret_fields()
    assert {"schema_registry.basic_auth.password", "metrics.basic_auth.password"} <= set(fields)
    for path in fields:
        raw: dict[str, Any] = {"tenant": "acme"}
        _set(raw, path, "hunter2")
        problems = literal_secrets(raw)
        assert any(p.startswith(path) for p in problems), (path, problems)


OPTIONS = ("sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret",
           "bearer.auth.token", "basic.auth.user.info", "ssl.keystore.password")  # fmt: skip


def test_every_option_held_as_a_secret_is_refused_when_written_out() -> None:
    kafka = KafkaConfig.model_validate({"options": dict.fromkeys(OPTIONS, "hunter2")})
    registry = SchemaRegistryConfig.model_validate(
        {"url": "https://sr:8081", "options": dict.fromkeys(OPTIONS, "hunter2")}
    )
    for section, model in (("kafka", kafka), ("schema_registry", registry)):
        assert all(isinstance(v, SecretStr) for v in model.options.values()), model.options
        assert "hunter2" not in repr(model) + model.model_dump_json()
        raw = {"tenant": "acme", section: {"options": dict.fromkeys(OPTIONS, "hunter2")}}
        refused = {p.split(":")[0] for p in literal_secrets(raw)}
        assert refused == {f"{section}.options.{o}" for o in OPTIONS}, refused
