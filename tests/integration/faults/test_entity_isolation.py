"""One entity stuck on a transient database error (here: every read of it ends in a statement
timeout) backs off on its own: the entities after it keep flowing, and /readyz, the metrics and
the log name the stuck entity until it reads again."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from tests.integration.faults.harness import (
    Scenario,
    SourceDB,
    customers_entity,
    free_port,
    metric,
    scrape,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def categories_entity() -> dict[str, Any]:
    return {
        "table": "categories",
        "key": "id",
        "fields": {"local_id": "id", "name": "name"},
        "batching": {"mode": "id", "column": "id"},
        "batch_size": 10,
        "poll_interval_s": 0.5,
    }


def test_a_stuck_entity_does_not_starve_the_others(scenario: Scenario, pg: SourceDB) -> None:
    pg.create_customers()
    pg.seed_customers(30)
    pg.execute(
        "CREATE TABLE categories (id bigint PRIMARY KEY, name text NOT NULL)",
        "INSERT INTO categories SELECT g, 'cat ' || g FROM generate_series(1, 20) AS g",
        # customers is read through a view that sleeps past the statement timeout while the
        # gate is closed. (A table lock would do too, but its open transaction would also
        # hold back the commit-safe horizon of every entity.)
        "CREATE TABLE gate (closed boolean NOT NULL)",
        "INSERT INTO gate VALUES (false)",
        "CREATE FUNCTION gate_wait() RETURNS boolean LANGUAGE plpgsql STABLE AS $$ BEGIN "
        "IF (SELECT closed FROM gate) THEN PERFORM pg_sleep(5); END IF; RETURN true; END $$",
        "CREATE VIEW customers_v AS SELECT * FROM customers WHERE gate_wait()",
    )
    port = free_port()
    # customers first: the old run loop retried the first failing entity forever.
    cfg = scenario.config(
        pg.url,
        {
            "customers": customers_entity(
                "id", batch_size=10, poll_interval_s=0.5, table="customers_v"
            ),
            "product_categories": categories_entity(),
        },
        source={"statement_timeout_s": 1},
        retry={"initial_backoff_s": 0.2, "max_backoff_s": 1},
        metrics_port=port,
    )
    proc = scenario.start(cfg, label="poller")
    scenario.wait_for_cursor("customers", 30, timeout=90, watch=[proc])
    scenario.wait_for_cursor("product_categories", 20, timeout=60, watch=[proc])

    pg.seed_customers(10, first=31)
    pg.execute("UPDATE gate SET closed = true")
    try:

        def customers_stuck() -> dict[str, Any] | None:
            code, body = readyz(port)
            return body if code == 503 and "customers" in body.get("stuck", {}) else None

        body = wait_for(customers_stuck, 60, "/readyz to name customers", watch=[proc])
        assert body["checks"]["entities"] is False, body
        stuck = body["stuck"]["customers"]
        assert "SourceError" in stuck["error"] and stuck["failures"] >= 1, stuck
        assert "product_categories" not in body["stuck"], body

        # While customers is stuck, new categories still arrive.
        pg.execute("INSERT INTO categories SELECT g, 'cat ' || g FROM generate_series(21, 45) g")
        scenario.wait_for_cursor("product_categories", 45, timeout=60, watch=[proc])
        wm = scenario.stored("customers")
        assert wm is not None and wm.position.cursor == 30, wm  # it did not move meanwhile

        samples = scrape(port)
        failures = metric(
            samples,
            "poller_entity_consecutive_failures",
            tenant=scenario.tenant,
            entity="customers",
        )
        assert failures is not None and failures >= 1, failures
        flowing = metric(
            samples,
            "poller_entity_consecutive_failures",
            tenant=scenario.tenant,
            entity="product_categories",
        )
        assert flowing == 0, flowing
        errors = metric(samples, "poller_errors_total", entity="customers", kind="SourceError")
        assert errors is not None and errors >= 1, errors
        logged = [
            line
            for line in proc.log().splitlines()
            if re.search(r"\[[^\]]*/customers\].*SourceError.*retry \d+ in", line)
        ]
        assert logged and "statement timeout" in logged[-1], proc.describe()
    finally:
        pg.execute("UPDATE gate SET closed = false")

    scenario.wait_for_cursor("customers", 40, timeout=60, watch=[proc])
    wait_for(lambda: readyz(port)[0] == 200, 30, "/readyz to be 200 again", watch=[proc])
    samples = scrape(port)
    assert (
        metric(
            samples,
            "poller_entity_consecutive_failures",
            tenant=scenario.tenant,
            entity="customers",
        )
        == 0
    )
    proc.terminate()
    assert proc.wait(timeout=60) == 0, proc.describe()
    scenario.verify_exactly_once("customers", pg.customers())


def test_a_revoked_grant_stops_one_entity_until_it_is_granted_again(
    scenario: Scenario, pg: SourceDB
) -> None:
    """A DBA revokes SELECT on one table while the poller runs: that entity backs off alone
    (named in /readyz as a missing privilege), the others keep flowing, and it resumes once
    the grant is back: a revoked grant is not a mapping that went wrong (no exit 2)."""
    pg.create_customers()
    pg.seed_customers(20)
    pg.execute(
        "CREATE TABLE categories (id bigint PRIMARY KEY, name text NOT NULL)",
        "INSERT INTO categories SELECT g, 'cat ' || g FROM generate_series(1, 10) AS g",
    )
    # The poller reads as a role of its own: the test's role is a superuser, which no REVOKE
    # can stop.
    role = f"reader_{uuid.uuid4().hex[:10]}"
    pg.execute(
        f"CREATE ROLE {role} LOGIN PASSWORD 'reader-pw'",
        f"GRANT SELECT ON customers, categories TO {role}",
    )
    url = sa.engine.make_url(pg.url).set(username=role, password="reader-pw")
    port = free_port()
    cfg = scenario.config(
        url.render_as_string(hide_password=False),
        {
            "product_categories": categories_entity(),
            "customers": customers_entity("id", batch_size=10, poll_interval_s=0.5),
        },
        retry={"initial_backoff_s": 0.2, "max_backoff_s": 1},
        metrics_port=port,
    )
    proc = scenario.start(cfg, label="poller")
    scenario.wait_for_cursor("product_categories", 10, timeout=90, watch=[proc])
    scenario.wait_for_cursor("customers", 20, timeout=60, watch=[proc])

    pg.execute(f"REVOKE SELECT ON categories FROM {role}")  # noqa: S608 (a generated name)
    try:
        pg.execute("INSERT INTO categories SELECT g, 'cat ' || g FROM generate_series(11, 15) g")

        def categories_stuck() -> dict[str, Any] | None:
            code, body = readyz(port)
            return body if code == 503 and "product_categories" in body.get("stuck", {}) else None

        body = wait_for(categories_stuck, 60, "/readyz to name the entity", watch=[proc])
        assert "PrivilegeError" in body["stuck"]["product_categories"]["error"], body
        pg.seed_customers(10, first=21)
        scenario.wait_for_cursor("customers", 30, timeout=60, watch=[proc])
        assert proc.alive(), proc.describe()
        wm = scenario.stored("product_categories")
        assert wm is not None and wm.position.cursor == 10, wm
        assert re.search(r"grant", proc.log(), re.IGNORECASE), proc.describe()
    finally:
        pg.execute(f"GRANT SELECT ON categories TO {role}")

    scenario.wait_for_cursor("product_categories", 15, timeout=60, watch=[proc])
    wait_for(lambda: readyz(port)[0] == 200, 30, "/readyz to be 200 again", watch=[proc])
    proc.terminate()
    assert proc.wait(timeout=60) == 0, proc.describe()
    scenario.verify_exactly_once("customers", pg.customers())
    pg.execute(f"REVOKE ALL ON customers, categories FROM {role}", f"DROP ROLE {role}")
