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


def test_tail_prints_the_last_n_by_default(
    pg_url: str,
    kafka_bootstrap: str,
    prefix: str,
    tmp_path,
    capsys,  # type: ignore[no-untyped-def]
) -> None:
    """`poller tail` is tail: the last N messages (by message time, the cursor's in timestamp
    mode) across partitions; --from-beginning prints from the first."""
    import json

    import yaml

    from poller.cli.main import main

    execute(pg_url, *PEOPLE_DDL)
    execute(
        pg_url,
        *(
            f"INSERT INTO people VALUES ({i}, '{TENANT}', 'P{i}', NULL, "  # noqa: S608
            f"'{T0 + dt.timedelta(seconds=i)}')"
            for i in range(1, 31)
        ),
    )
    raw = config(
        pg_url, TENANT, kafka_bootstrap, prefix, {"customers": people_entity("timestamp", 7)}
    )
    Poller(parse_config(raw)).run(once=True)  # 5 transactions over 3 partitions
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))

    def ids(*extra: str) -> list[int]:
        assert main(["tail", "--config", str(path), "--entity", "customers", *extra]) == 0
        return [int(json.loads(line)["local_id"]) for line in capsys.readouterr().out.splitlines()]

    assert ids("--limit", "3") == [28, 29, 30]
    assert ids() == list(range(21, 31))  # the default: the last 10
    assert sorted(ids("--from-beginning")) == list(range(1, 31))
    assert len(ids("--from-beginning", "-n", "4")) == 4
