"""Schedules stored under tests/model/replays/ (written by a failing model test), run as they
are on a fresh table."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.model.driver import ModelRun

pytestmark = pytest.mark.integration
REPLAYS = sorted((Path(__file__).parent / "replays").glob("*.json"))
if os.environ.get("MODEL_REPLAY"):  # one file, e.g. of tests/model/known_gaps/
    REPLAYS = [Path(os.environ["MODEL_REPLAY"])]


@pytest.mark.parametrize("path", REPLAYS, ids=[p.stem for p in REPLAYS])
def test_replay(path: Path, request: pytest.FixtureRequest, kafka_bootstrap: str,
                tmp_path: Path) -> None:  # fmt: skip
    spec = json.loads(path.read_text(encoding="utf-8"))
    url = str(request.getfixturevalue("pg_url" if spec["db"] == "postgresql" else "mariadb_url"))
    run = ModelRun(spec["db"], spec["mode"], url, kafka_bootstrap, tmp_path)
    try:
        run.run(int(spec["seed"]), spec["steps"], cli_drain=bool(spec.get("cli_drain", False)))
    finally:
        run.close()
