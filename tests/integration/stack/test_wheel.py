"""The wheel works outside the source tree: built with `python -m build`, installed into a fresh
virtualenv in a temporary folder, it seeds the demo and checks its configuration against the
real Kafka, with the schemas it carries as package data. On PostgreSQL it copies a table without
the accelerator (the Python path), then with the poller_native wheel installed beside it (the
native path), and both copies hold the same messages.

The accelerator half needs the native wheel: reused from native/target/wheels when it is newer
than native/'s sources (`make venv` / `make wheel` leave it there), else built with maturin.
`make test` leaves that test out where the extension is not installed (no Rust toolchain)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from poller.config import parse_config
from tests.integration.pipeline.helpers import PEOPLE_DDL, execute, topics_deleted_after
from tests.integration.topics import read_to_end

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def run(
    cmd: list[str], cwd: Path, timeout: float = 600, check_ok: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "POLLER_SCHEMAS_DIR", "POLLER_NATIVE")}  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert not check_ok or proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with only the poller wheel installed (no accelerator)."""
    tmp = tmp_path_factory.mktemp("wheel")
    dist = tmp / "dist"
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)], tmp)
    wheels = list(dist.glob("poller-*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = tmp / "venv"
    venv.create(env_dir, with_pip=True)
    run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheels[0])], tmp)
    yield env_dir


def test_wheel_installs_and_runs_outside_the_repository(
    tmp_path: Path, kafka_bootstrap: str, installed: Path
) -> None:
    env_dir = installed
    py = env_dir / "bin" / "python"
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


NATIVE = ROOT / "native"
ROWS = 2_500
PROBE = "from poller.source import native_pg as n; print(n.available(), n.why_off())"


def native_wheel(tmp: Path) -> Path:
    """The poller_native wheel: the one `make venv` built when it is fresh, else maturin's."""
    sources = [NATIVE / "Cargo.toml", NATIVE / "Cargo.lock", NATIVE / "pyproject.toml",
               *(NATIVE / "src").glob("*.rs")]  # fmt: skip
    newest = max(p.stat().st_mtime for p in sources)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or NATIVE / "target")
    built = sorted(target.joinpath("wheels").glob("poller_native-*.whl"),
                   key=lambda p: p.stat().st_mtime)  # fmt: skip
    if built and built[-1].stat().st_mtime >= newest:
        return built[-1]
    assert shutil.which("cargo"), "no fresh poller_native wheel and no cargo to build one"
    maturin = Path(sys.executable).with_name("maturin")
    out = tmp / "native-dist"
    run([str(maturin), "build", "--release", "--quiet", "-m", str(NATIVE / "Cargo.toml"),
         "-o", str(out)], tmp, timeout=1200)  # fmt: skip
    (wheel,) = out.glob("poller_native-*.whl")
    return wheel


def copy_table(env_dir: Path, work: Path, url: str, bootstrap: str) -> tuple[list[Any], str]:
    """`poller run --once` of the installed wheel on the table: the topic's (key, value)
    pairs in order, and the poller's log."""
    prefix = f"wheel_{uuid.uuid4().hex[:10]}"
    raw = {
        "tenant": "acme",
        "source": {"url": url, "tenant_column": "user_id", "timezone": "UTC"},
        "kafka": {"bootstrap_servers": bootstrap, "topic_prefix": prefix,
                  "transactional_id_prefix": prefix, "format": "single_object"},
        "metrics": {"enabled": False},
        "logging": {"format": "json", "level": "INFO"},
        "retry": {"max_attempts": 3, "max_backoff_s": 2, "startup_timeout_s": 10},
        "entities": {"customers": {
            "table": "people", "key": "id", "batch_size": 1_000, "settle_delay_s": 0,
            "fields": {"local_id": "id", "first_name": "f_name", "last_name": "l_name",
                       "updated_at": "updated_at"},
            "batching": {"mode": "timestamp+id", "column": "updated_at", "id_column": "id"},
        }},
    }  # fmt: skip
    conf = work / f"{prefix}.yaml"
    conf.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    topic = parse_config(raw).kafka.topic_for("customers", "acme")
    with topics_deleted_after(bootstrap, prefix):
        poller = str(env_dir / "bin" / "poller")
        done = run([poller, "run", "--config", str(conf), "--once"], work)
        found = read_to_end(bootstrap, [topic], 20.0, group=prefix)[topic]
    return [(m.partition(), m.key(), m.value()) for m in found], done.stdout + done.stderr


def test_the_wheel_copies_postgresql_without_and_with_the_accelerator(
    tmp_path: Path, kafka_bootstrap: str, installed: Path, pg_url: str
) -> None:
    execute(pg_url, *PEOPLE_DDL)
    execute(pg_url, "INSERT INTO people SELECT i, 'acme', 'Имя ' || i, "
                    "CASE WHEN mod(i, 3) = 0 THEN NULL ELSE 'Ñame' END, "
                    "timestamp '2024-03-31 00:00:00' + i * interval '1 minute' "
                    "FROM generate_series(1, :rows) AS i", params={"rows": ROWS})  # fmt: skip
    py, work = str(installed / "bin" / "python"), tmp_path
    if run([py, "-c", "import poller_native"], work, check_ok=False).returncode == 0:
        run([py, "-m", "pip", "uninstall", "-q", "-y", "poller-native"], work)
    assert run([py, "-c", PROBE], work).stdout.split()[0] == "False"
    python_path, log_off = copy_table(installed, work, pg_url, kafka_bootstrap)
    assert "native PostgreSQL path is off" in log_off

    wheel = native_wheel(tmp_path)
    run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], work)
    probe = run([py, "-c", PROBE + "; import poller_native; print(poller_native.__file__)"], work)
    assert probe.stdout.split()[0] == "True", probe.stdout
    assert Path(probe.stdout.split()[-1]).is_relative_to(installed), probe.stdout
    native_path, log_on = copy_table(installed, work, pg_url, kafka_bootstrap)
    assert "native PostgreSQL path is off" not in log_on
    assert "the Python path reads" not in log_on, log_on[-2000:]

    assert len(python_path) == ROWS
    assert native_path == python_path  # same partitions, keys and value bytes, same order
    for line in log_on.splitlines():  # the run really was a copy (not a no-op)
        if line.startswith("{") and "stopped" in json.loads(line).get("message", ""):
            break
    else:
        raise AssertionError(f"no 'stopped' line: {log_on[-2000:]}")
