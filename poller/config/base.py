"""What every part of the configuration shares: the model base, identifiers, batching modes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, SecretStr

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$#]*$")
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


# Default settle delays. With the transaction horizon the delay only covers the short race
# between a writer taking its timestamp and showing up in the database's transaction list
# (MySQL refreshes innodb_trx at most every 0.1 s); without it, it is the only defence
# against transactions that commit late, so it is long.
SETTLE_WITH_HORIZON_S = 1.0
SETTLE_FALLBACK_S = 30.0


class Mode(StrEnum):
    ID = "id"
    TIMESTAMP = "timestamp"
    TIMESTAMP_ID = "timestamp+id"


def check_identifier(value: str, what: str, qualified: bool = False) -> str:
    parts = value.split(".") if qualified else [value]
    if not all(IDENTIFIER.match(p) for p in parts):
        raise ValueError(
            f"{what} {value!r} is not a plain identifier (letters, digits, _; "
            f"{'schema.table' if qualified else 'no dots'}); use `query:` for anything else"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Client options (librdkafka's, the registry client's) whose values are secrets: typed SecretStr
# once validated, so repr/str/model_dump of a configuration never show them.
SECRET_OPTION = re.compile(
    r"(password|passwd|pwd|secret|token|basic\.auth\.user\.info|sasl\.jaas\.config)", re.I
)
OptionValue = str | int | float | bool | SecretStr  # SecretStr last: a plain str stays a str


def _seal(options: dict[str, OptionValue]) -> dict[str, OptionValue]:
    return {
        k: SecretStr(v) if isinstance(v, str) and SECRET_OPTION.search(k) else v
        for k, v in options.items()
    }


Options = Annotated[dict[str, OptionValue], AfterValidator(_seal)]


def plain_options(options: Mapping[str, OptionValue]) -> dict[str, str | int | float | bool]:
    """The options as the clients take them: secrets unwrapped (only at the client's door)."""
    return {k: v.get_secret_value() if isinstance(v, SecretStr) else v for k, v in options.items()}
