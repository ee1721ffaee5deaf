"""The wheel works outside the source tree: built with `python -m build`, installed into a fresh
virtualenv in a temporary folder, it seeds the demo and checks its configuration against the
real Kafka, with the schemas it carries as package data."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "POLLER_SCHEMAS_DIR")}
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def test_wheel_installs_and_runs_outside_the_repository(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)], tmp_path)
    wheels = list(dist.glob("poller-*.whl"))
    assert len(wheels) == 1, wheels

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", str(wheels[0])], tmp_path)

    work = tmp_path / "work"  # no schemas/ and no poller/ here: only the installed wheel
    work.mkdir()
    located = run([str(py), "-c", "import poller.avro.schemas as s; print(s.SCHEMAS_DIR)"], work)
    schemas_dir = Path(located.stdout.strip())
    assert schemas_dir.is_relative_to(env_dir), f"schemas read from {schemas_dir}, not the wheel"
    assert sorted(p.name for p in schemas_dir.glob("*.avsc")) == sorted(
        p.name for p in (ROOT / "schemas").glob("*.avsc")
    )

    poller = str(env_dir / "bin" / "poller")
    seeded = run([poller, "demo", "--seed-only", "--bootstrap", kafka_bootstrap], work)
    config = work / "demo-out" / "poller.yaml"
    assert config.exists(), seeded.stdout
    checked = run([poller, "check", "--config", str(config)], work)
    assert any(line.startswith("ok: 8 entities checked") for line in checked.stdout.splitlines()), (
        checked.stdout
    )
