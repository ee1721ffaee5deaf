"""`poller run --once` while a source transaction is open (issue 16, item 18).

Before: the horizon found no safe bound past the open transaction, the batch came back short,
and `--once` took that for "caught up": exit 0, nothing in the log. Now it publishes everything
committed before the open transaction, waits `--max-wait` for it, names it, and exits 9.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from tests.integration.conftest import REPO_ROOT
from tests.integration.faults.harness import Scenario, SourceDB, customers_entity
from tests.integration.faults.waits import poller_argv

pytestmark = pytest.mark.integration

SEEDED = 20
INSERT_NOW = (
    "INSERT INTO customers (id, full_name, updated_at) "
    "VALUES (:id, :name, (now() AT TIME ZONE 'UTC')::timestamp(6))"
)


@pytest.fixture
def tx_engine(pg: SourceDB) -> Iterator[sa.Engine]:
    engine = sa.create_engine(pg.url, poolclass=NullPool)
    yield engine
    engine.dispose()


def run_once(config: object, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = poller_argv("run", "--config", str(config), "--once", *extra)
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, cwd=REPO_ROOT
    )


@pytest.mark.parametrize("mode", ["timestamp", "id"])
def test_once_names_the_open_transaction_and_exits_8_then_finishes_after_it(
    scenario: Scenario, pg: SourceDB, tx_engine: sa.Engine, mode: str
) -> None:
    pg.create_customers()
    pg.seed_customers(SEEDED)
    cfg = scenario.config(pg.url, {"customers": customers_entity(mode, poll_interval_s=0.3)})
    if mode == "id":
        # id mode knows an id is safe only from a maximum read before the open transactions
        # began (a fresh `--once` has no earlier look): the previous run is that look.
        first = run_once(cfg)
        assert first.returncode == 0, f"exit {first.returncode}:\n{first.stderr}"
    with tx_engine.connect() as open_tx:
        # A writer that has stamped (timestamp) / taken (id) its row but not committed yet...
        open_tx.execute(sa.text(INSERT_NOW), {"id": SEEDED + 1, "name": "late"})
        # ...and a row committed after it started: it must wait for the open one.
        with tx_engine.begin() as conn:
            conn.execute(sa.text(INSERT_NOW), {"id": SEEDED + 2, "name": "after"})
        # --once reads up to its start less the settle delay (1 s with the horizon): the open
        # transaction must be older than that to hold it back.
        time.sleep(2.5)
        out = run_once(cfg, "--max-wait", "2")
        assert out.returncode == 9, f"exit {out.returncode}:\n{out.stdout}\n{out.stderr}"
        said = out.stderr + out.stdout
        assert "could not read up to its start time" in said
        held = "a transaction open since" if mode == "timestamp" else "open transaction(s)"
        assert held in said, said
        if mode == "timestamp":  # who it is, for the DBA (never the query text)
            assert ", user poller, application " in said, said
        published = scenario.delivery("customers")
        assert sorted(int(k) for k in published.by_id) == list(range(1, SEEDED + 1))
        open_tx.commit()
    out = run_once(cfg, "--max-wait", "30")
    assert out.returncode == 0, f"exit {out.returncode}:\n{out.stdout}\n{out.stderr}"
    scenario.verify_exactly_once("customers", pg.customers())
