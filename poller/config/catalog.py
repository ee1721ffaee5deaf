"""What a configuration may map: the entities and their fields as `schemas/` declares them.

Read as plain JSON here (the configuration lists unknown entities and fields with its other
problems); poller.avro.schemas parses the same files for encoding and names them from here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from poller.errors import ConfigError

ENTITIES: tuple[str, ...] = (
    "customers",
    "receipts",
    "receipt_lines",
    "events",
    "products",
    "product_categories",
    "bonus_balances",
    "promo_codes",
)
_PACKAGE = Path(__file__).resolve().parents[1]
# An installed wheel carries the schemas as poller/schemas/; a source checkout keeps them in the
# repository's top-level schemas/, their one home.
_DEFAULT_SCHEMAS_DIR = (
    _PACKAGE / "schemas" if (_PACKAGE / "schemas").is_dir() else _PACKAGE.parent / "schemas"
)


def default_schemas_dir() -> Path:
    """POLLER_SCHEMAS_DIR if set, else the repository's schemas/ (read at call time)."""
    env = os.environ.get("POLLER_SCHEMAS_DIR")
    return Path(env) if env else _DEFAULT_SCHEMAS_DIR


def is_nullable(avro_type: object) -> bool:
    return isinstance(avro_type, list) and "null" in avro_type


def entity_fields(name: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """The entity's field names in order, and those that may not be null."""
    path = default_schemas_dir() / f"{name}.avsc"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        fields = raw["fields"]
        names = tuple(str(f["name"]) for f in fields)
        required = frozenset(str(f["name"]) for f in fields if not is_nullable(f["type"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError([f"not a readable entity schema: {e}"], source=str(path)) from None
    return names, required
