"""What every part of the configuration shares: the model base, identifiers, batching modes."""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

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
