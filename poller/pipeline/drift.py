"""Source drift while running: a mapped column dropped, renamed or retyped after the start-up
check. The mapping is re-checked every `source.drift_check_interval_s` (and whenever a batch
query stops fitting the source); problems go to the `poller_schema_drift` gauge and stop the
poller with exit 8, naming each field and column. Retrying cannot bring a column back."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import sqlalchemy as sa

from poller.avro.schemas import EntitySchema
from poller.config import AppConfig
from poller.errors import SchemaMismatchError
from poller.ops.entity_metrics import TenantMetrics
from poller.pipeline.preflight import field_types
from poller.source.query import EntityQuery
from poller.source.reader import check_entity

log = logging.getLogger(__name__)


class DriftWatch:
    def __init__(
        self,
        cfg: AppConfig,
        engine: sa.Engine,
        meters: TenantMetrics,
        schemas: Mapping[str, EntitySchema],
        queries: Mapping[str, EntityQuery],
    ) -> None:
        self.cfg, self.engine, self.meters = cfg, engine, meters
        self.schemas, self.queries = schemas, queries
        self.interval = cfg.source.drift_check_interval_s
        self.next_at = time.monotonic() + self.interval

    def check_due(self) -> None:
        """Re-check when the interval has passed (0: never); raises on drift."""
        if self.interval and time.monotonic() >= self.next_at:
            self.check()

    def check(self) -> None:
        """Check every entity's mapping now: the gauge gets each entity's problem count, and
        any problem stops the poller (SchemaMismatchError, exit 8). A lost connection
        (SourceError) propagates and is retried like any read."""
        problems: list[str] = []
        for name, ent in self.cfg.enabled_entities().items():
            found = check_entity(
                self.engine, self.queries[name], ent, field_types(self.schemas[name])
            )
            self.meters.entity(name).drift_found(len(found))
            problems += found
        self.next_at = time.monotonic() + self.interval
        if problems:
            raise SchemaMismatchError(
                f"schema drift: the source {self.cfg.source.safe_url} no longer fits the mapping "
                f"({len(problems)} problem(s); stopping, nothing after the last committed batch "
                "was written). Fix the source or the mapping, then start again:\n"
                + "\n".join(f"  - {p}" for p in problems)
            )

    def explain(self, exc: SchemaMismatchError) -> SchemaMismatchError:
        """A batch failed as not fitting the source: the drift check names the field and column
        when it finds them; otherwise the batch's own error stands."""
        try:
            self.check()
        except SchemaMismatchError as drift:
            return drift
        except Exception as other:  # the check itself failed: keep the batch's error
            log.warning("re-checking the mapping after %s failed: %s", exc, other)
        return exc
