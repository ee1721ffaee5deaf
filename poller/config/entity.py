"""`entities.<name>:`: one entity's table, key, field mapping, batching and policies."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from poller.config.base import (
    SETTLE_FALLBACK_S,
    SETTLE_WITH_HORIZON_S,
    Mode,
    _Model,
    check_identifier,
)


class Batching(_Model):
    mode: Mode = Field(description="id, timestamp or timestamp+id", examples=["timestamp"])
    column: str = Field(description="the change-tracking column (cursor)", examples=["updated_at"])
    id_column: str | None = Field(
        None, description="timestamp+id: the unique tie-breaker", examples=["id"]
    )

    @field_validator("column", "id_column")
    @classmethod
    def _ident(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier(v, "column")

    @model_validator(mode="after")
    def _id_column(self) -> Batching:
        if self.mode is Mode.TIMESTAMP_ID and self.id_column is None:
            raise ValueError("mode timestamp+id needs id_column (the unique tie-breaker)")
        if self.mode is not Mode.TIMESTAMP_ID and self.id_column is not None:
            raise ValueError("id_column is only used with mode timestamp+id")
        return self


class DeletesConfig(_Model):
    """Soft deletes: such a row is published as a tombstone (key, null value)."""

    column: str = Field(
        description="the soft-delete flag or deleted_at column", examples=["is_deleted"]
    )
    values: list[str | int | bool] | None = Field(
        None,
        min_length=1,
        description="values meaning deleted; omitted: deleted when not NULL",
        examples=[[1, "Y"]],
    )

    @field_validator("column")
    @classmethod
    def _column(cls, v: str) -> str:
        return check_identifier(v, "deletes.column")


_SHARE = "a reconcile pass finding more than this share of the keys gone stops, tombstoning none"


class EntityConfig(_Model):
    table: str | None = Field(
        None, description="table or schema.table; or give query", examples=["customers"]
    )
    query: str | None = Field(
        None,
        description="a SELECT wrapped as a subquery (trusted SQL); or give table",
        examples=["SELECT c.*, s.currency FROM cheques c JOIN shops s ON s.id = c.shop_id"],
    )
    fields: dict[str, str] = Field(
        description="canonical field -> source column or SQL expression",
        examples=[{"local_id": "customer_id", "full_name": "CONCAT_WS(' ', f_name, l_name)"}],
    )
    key: str | list[str] = Field(
        description="the row's unique key column(s)",
        examples=["customer_id", ["cheque_id", "line_no"]],
    )
    batching: Batching = Field(
        description="how rows are ordered and resumed",
        examples=[{"mode": "id", "column": "customer_id"}],
    )
    batch_size: int = Field(
        10_000, ge=1, le=1_000_000, description="rows per query and Kafka transaction"
    )
    poll_interval_s: float = Field(
        30, gt=0, description="wait after a poll that found the entity caught up"
    )
    heartbeat_interval_s: float = Field(
        60, ge=0, description="rewrite an idle entity's watermark this often; 0 = never"
    )
    settle_delay_s: float | None = Field(
        None,
        ge=0,
        description="wait before reading a row stamped now (seconds); default: 1 with the "
        "transaction horizon, 30 without",
        examples=[2],
    )
    null_cursor: Literal["fail", "skip"] = Field(
        "fail", description="skip: rows whose cursor is NULL are never read (counted in a metric)"
    )
    start: str | int = Field(
        "earliest", description="where a new entity starts: earliest, now or a cursor value"
    )
    on_bad_row: Literal["fail", "dead_letter"] = Field(
        "fail", description="a row that cannot be encoded: stop (exit 4) or dead-letter it"
    )
    enabled: bool = Field(True, description="false: configured and checked, but not copied")
    deletes: DeletesConfig | None = Field(
        None,
        description="soft deletes published as tombstones",
        examples=[{"column": "is_deleted", "values": [1, "Y"]}],
    )
    repair_interval_s: float | None = Field(
        None,
        gt=0,
        description="tombstone keys deleted in the source, this often (seconds)",
        examples=[3600],
    )
    repair_rows_per_s: float = Field(1000, gt=0, description="keys looked up per second")
    repair_range_keys: int = Field(1000, ge=1, le=100_000, description="keys per transaction")
    repair_max_tombstone_share: float = Field(0.01, ge=0, le=1, description=_SHARE)

    @field_validator("table")
    @classmethod
    def _table(cls, v: str | None) -> str | None:
        return None if v is None else check_identifier(v, "table", qualified=True)

    @field_validator("key")
    @classmethod
    def _key(cls, v: str | list[str]) -> str | list[str]:
        names = [v] if isinstance(v, str) else v
        if not names or len(set(names)) != len(names):
            raise ValueError("key must name one column or a list of distinct columns")
        for name in names:
            check_identifier(name, "key")
        return v

    @field_validator("query")
    @classmethod
    def _query(cls, v: str | None) -> str | None:
        if v is None:
            return None
        body = v.strip().rstrip(";").strip()
        if not re.match(r"(?is)^\s*(select|with)\b", body):
            raise ValueError("query must be a SELECT (it is wrapped as a subquery)")
        if ";" in body:
            raise ValueError("query must be a single statement (found ';')")
        return body

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [f for f, expr in v.items() if not expr.strip() or ";" in expr or "--" in expr]
        if bad:
            raise ValueError(f"empty expression, ';' or '--' in mapping of {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> EntityConfig:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        return self

    @property
    def key_columns(self) -> list[str]:
        """The row's key: one column, or several (`key: [receipt_id, line_no]`)."""
        return [self.key] if isinstance(self.key, str) else list(self.key)

    @property
    def tiebreak_columns(self) -> list[str]:
        """What orders rows sharing one cursor value: id_column, else the key column(s)."""
        return [self.batching.id_column] if self.batching.id_column else self.key_columns

    @property
    def tiebreak(self) -> str:
        """The first tie-breaker column (the only one unless the key is composite)."""
        return self.tiebreak_columns[0]

    @property
    def key_is_tiebreak(self) -> bool:
        """False when the message key must be selected as column(s) of its own."""
        return self.tiebreak_columns == self.key_columns

    def settle_s(self, horizon_active: bool) -> float:
        """The settle delay in force: the configured one, else the default for the horizon."""
        if self.settle_delay_s is not None:
            return self.settle_delay_s
        return SETTLE_WITH_HORIZON_S if horizon_active else SETTLE_FALLBACK_S

    @property
    def is_time_mode(self) -> bool:
        return self.batching.mode is not Mode.ID
