"""Bad configuration and unreachable services: a clear error naming what and where, a non-zero
exit within a bounded time, and nothing written to the entity topics (the start-up preflight
checks the database, Kafka and every entity's columns before anything is published)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.faults.harness import (
    PollerProcess,
    Scenario,
    SourceDB,
    customers_entity,
    end_offsets,
    free_port,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

STARTUP_TIMEOUT_S = 5
# Start-up preflight budget plus interpreter start, topic listing and shutdown.
EXIT_WITHIN_S = STARTUP_TIMEOUT_S + 40


def run_failing(scenario: Scenario, config: Any) -> tuple[PollerProcess, int, str]:
    proc = scenario.start(config, once=False, label="poller")  # continuous: must stop by itself
    rc = proc.wait(timeout=EXIT_WITHIN_S + 30)
    assert proc.elapsed <= EXIT_WITHIN_S, f"took {proc.elapsed:.1f}s to give up:\n{proc.describe()}"
    assert rc != 0, f"exit 0 on a broken setup:\n{proc.describe()}"
    log = proc.log()
    start = log.find("poller: error:")  # the final message, with its list of problems
    return proc, rc, log[start:] if start >= 0 else log


def assert_nothing_written(scenario: Scenario, entity: str = "customers") -> None:
    for topic in (scenario.topic(entity), scenario.watermark_topic):
        ends = end_offsets(scenario.bootstrap, topic)
        assert ends is None or not any(ends.values()), f"{topic} was written to: ends {ends}"


def test_unknown_column(scenario: Scenario, pg: SourceDB) -> None:
    pg.create_customers()
    pg.seed_customers(10)
    entity = customers_entity("id")
    entity["fields"] = {**entity["fields"], "full_name": "no_such_column"}
    proc, rc, error = run_failing(scenario, scenario.config(pg.url, {"customers": entity}))
    assert rc == 8, f"exit {rc}, expected 8 (mapping/schema):\n{proc.describe()}"
    for part in ("customers", "full_name", "no_such_column"):
        assert part in error, f"{part!r} not named in:\n{error}"
    assert_nothing_written(scenario)


def test_timestamp_mode_on_a_text_column(scenario: Scenario, pg: SourceDB) -> None:
    pg.create_customers()
    pg.seed_customers(10)
    pg.execute(
        "ALTER TABLE customers ADD COLUMN changed varchar(40)",
        "UPDATE customers SET changed = CAST(updated_at AS text)",
    )
    entity = customers_entity("id", batching={"mode": "timestamp", "column": "changed"})
    proc, rc, error = run_failing(scenario, scenario.config(pg.url, {"customers": entity}))
    assert rc == 8, f"exit {rc}, expected 8 (mapping/schema):\n{proc.describe()}"
    for part in ("customers", "changed", "timestamp", "string"):
        assert part in error, f"{part!r} not named in:\n{error}"
    assert_nothing_written(scenario)


def test_unreachable_database(scenario: Scenario, kafka_bootstrap: str) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql+psycopg2://poller:Xq9-secret-pw@127.0.0.1:{port}/nowhere"
    cfg = scenario.config(
        url, {"customers": customers_entity("id")}, retry={"startup_timeout_s": STARTUP_TIMEOUT_S}
    )
    proc, _rc, error = run_failing(scenario, cfg)
    assert f"127.0.0.1:{port}" in error, f"the database address is not named:\n{error}"
    assert "Xq9-secret-pw" not in proc.log(), "the password leaked into the output"
    assert_nothing_written(scenario)


def test_unreachable_broker(scenario: Scenario, pg: SourceDB) -> None:
    pg.create_customers()
    pg.seed_customers(10)
    bootstrap = f"127.0.0.1:{free_port()}"
    cfg = scenario.config(
        pg.url,
        {"customers": customers_entity("id")},
        bootstrap=bootstrap,
        retry={"startup_timeout_s": STARTUP_TIMEOUT_S},
    )
    _proc, _rc, error = run_failing(scenario, cfg)
    assert bootstrap in error and "kafka" in error.lower(), f"the broker is not named:\n{error}"
    assert_nothing_written(scenario)  # on the real broker: no such topics either
