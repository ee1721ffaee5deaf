"""Model-based interleaving test: seeded schedules of concurrent writers and poller turns on the
real PostgreSQL and MariaDB and the real Kafka, checked against a model of the committed rows.
See docs/model-test.md.

Budget (make test): MODEL_SCHEDULES schedules per (database, mode), seeds MODEL_SEED...;
`make soak` runs thousands. MODEL_KEEP_GOING=1 runs every schedule and lists each failing seed
(a fresh table after each failure) instead of stopping at the first.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from tests.model.driver import ModelRun, ScheduleFailed
from tests.model.schedule import Knobs, generate

SCHEDULES = int(os.environ.get("MODEL_SCHEDULES", "30"))
FIRST_SEED = int(os.environ.get("MODEL_SEED", "1"))
CLI_EVERY = int(os.environ.get("MODEL_CLI_EVERY", "20"))  # `poller run --once` as the drain
KEEP_GOING = os.environ.get("MODEL_KEEP_GOING", "") not in ("", "0")
STEPS = int(os.environ.get("MODEL_STEPS", str(Knobs.steps)))

pytestmark = pytest.mark.integration
MODES = ["id", "timestamp", "timestamp+id"]


@pytest.fixture(params=["postgresql", "mariadb"])
def db(request: pytest.FixtureRequest) -> tuple[str, str]:
    name = str(request.param)
    return name, str(request.getfixturevalue("pg_url" if name == "postgresql" else "mariadb_url"))


@pytest.mark.parametrize("mode", MODES)
def test_interleavings(
    db: tuple[str, str], mode: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    name, url = db
    knobs = Knobs(steps=STEPS)
    run = ModelRun(name, mode, url, kafka_bootstrap, tmp_path)
    failures: list[str] = []
    figures: Counter[str] = Counter()
    try:
        for n, seed in enumerate(range(FIRST_SEED, FIRST_SEED + SCHEDULES)):
            steps = generate(name, mode, seed, knobs)
            cli = CLI_EVERY > 0 and n % CLI_EVERY == CLI_EVERY - 1
            try:
                run.run(seed, steps, cli_drain=cli)
            except ScheduleFailed as exc:
                if not KEEP_GOING:
                    raise
                failures.append(str(exc))
                print(f"FAILED seed {seed}: " + str(exc).split("\nreplay: ")[0], flush=True)
                figures += run.figures
                run.close()
                run = ModelRun(name, mode, url, kafka_bootstrap, tmp_path / f"after-{seed}")
    finally:
        figures += run.figures
        run.close()
    committed = sum(1 for r in run.ledger.rows.values() if r.final is not None)
    last = FIRST_SEED + SCHEDULES - 1
    print(
        f"\n{name} {mode}: {SCHEDULES} schedules, seeds {FIRST_SEED}..{last}, "
        f"{len(failures)} failed; last table: {committed} committed rows; steps and messages: "
        + ", ".join(f"{k} {v}" for k, v in sorted(figures.items()))
    )
    if failures:
        seeds = [f.split("seed ")[1].split(" ")[0] for f in failures]
        pytest.fail(f"{len(failures)} failing seeds: {seeds}\n\nfirst:\n{failures[0]}")
