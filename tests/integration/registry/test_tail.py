"""`poller tail` decodes both formats: single-object values with JSON keys, and Confluent
values and Avro keys (schemas fetched from the registry by id)."""

from __future__ import annotations

import datetime as dt

import pytest

from poller.config import parse_config
from poller.kafka.tail import tail
from poller.pipeline.runner import Poller
from tests.integration.pipeline.helpers import PEOPLE_DDL, TENANT, config, execute, people_entity

pytestmark = pytest.mark.integration
T0 = dt.datetime(2024, 3, 1, 12, 0, 0)


@pytest.mark.parametrize("fmt", ["single_object", "confluent"])
def test_tail_decodes_both_formats(
    fmt: str, pg_url: str, kafka_bootstrap: str, prefix: str, registry_url: str
) -> None:
    execute(pg_url, *PEOPLE_DDL)
    execute(
        pg_url,
        *(
            f"INSERT INTO people VALUES ({i}, '{TENANT}', 'Émilie {i}', NULL, "  # noqa: S608
            f"'{T0 + dt.timedelta(seconds=i)}')"
            for i in range(1, 4)
        ),
    )
    raw = config(pg_url, TENANT, kafka_bootstrap, prefix, {"customers": people_entity("id", 10)})
    raw["kafka"]["format"] = fmt
    raw["schema_registry"] = {"url": registry_url}  # tail needs it for the Confluent format
    cfg = parse_config(raw)
    Poller(cfg).run(once=True)
    records = sorted(tail(cfg, "customers"), key=lambda r: int(str(r["local_id"])))
    assert [r["first_name"] for r in records] == ["Émilie 1", "Émilie 2", "Émilie 3"]
    assert all(r["last_name"] is None for r in records)
    assert records[0]["updated_at"] == (T0 + dt.timedelta(seconds=1)).replace(tzinfo=dt.UTC)
    keys = [r["_key"] for r in records]
    if fmt == "confluent":
        assert keys == [{"tenant": TENANT, "local_id": str(i)} for i in (1, 2, 3)]
    else:
        assert keys == [[TENANT, i] for i in (1, 2, 3)]
    assert list(tail(cfg, "customers", limit=2)).__len__() == 2
