"""Every entity end to end against the real services, on SQLite, PostgreSQL and MariaDB.

Each test owns a fresh database, a unique topic prefix and transactional id, and deletes its
topics at the end. Topics are read back read_committed and compared with the source rows.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from poller.avro.schemas import ENTITIES
from poller.demo.sample_data import ENTITY_TABLES, create_and_seed, demo_config
from tests.integration.pipeline.helpers import (
    OTHER,
    TENANT,
    assert_exactly_once,
    db_url,
    engine,
    read_topics,
    run_once,
    stored_watermarks,
    tenant_keys,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["id", "timestamp"])
@pytest.mark.parametrize("backend", ["postgresql", "mariadb", "sqlite"])
def test_every_entity_end_to_end(
    backend: str,
    mode: str,
    prefix: str,
    kafka_bootstrap: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    url = db_url(backend, request, tmp_path)
    eng = engine(url)
    try:
        counts = create_and_seed(eng, (TENANT, OTHER))
    finally:
        eng.dispose()
    cfg: dict[str, Any] = copy.deepcopy(demo_config(url, TENANT, kafka_bootstrap, prefix))
    cfg["source"]["url"] = url  # the real URL, not the ${PASSWORD} placeholder
    assert set(cfg["entities"]) == set(ENTITIES)
    for ent in cfg["entities"].values():
        column = ent["key"] if mode == "id" else "updated_at"
        ent["batching"] = {"mode": mode, "column": column}
        # Many batch boundaries, some inside the seed's runs of rows sharing one updated_at.
        ent["batch_size"] = 97
    run_once(cfg)

    topics = read_topics(kafka_bootstrap, [f"{prefix}.{name}" for name in ENTITIES])
    for name, ent in cfg["entities"].items():
        table = ENTITY_TABLES[name]
        assert counts[(TENANT, table)] > 0 and counts[(OTHER, table)] > 0, (name, counts)
        mine = tenant_keys(url, table, ent["key"], TENANT)
        theirs = tenant_keys(url, table, ent["key"], OTHER)
        assert len(mine) == counts[(TENANT, table)] and len(theirs) == counts[(OTHER, table)]
        messages = topics[f"{prefix}.{name}"]
        assert_exactly_once(messages, mine, TENANT, f"{backend}/{mode}/{name}")
        assert not {m.key for m in messages} & set(theirs), f"{name}: {OTHER} rows published"
        assert all(m.entity == name for m in messages)
        assert all(m.record["local_id"] == str(m.key) for m in messages), name
    marks = stored_watermarks(kafka_bootstrap, prefix, TENANT)
    assert {n: w.rows_total for n, w in marks.items()} == {
        n: counts[(TENANT, ENTITY_TABLES[n])] for n in ENTITIES
    }
