"""Exit codes are named in one place (errors.py), and whoever runs the process learns whether a
restart can help and what the process said when it stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from poller.errors import EXIT_CODES, REASON_FILE_ENV, describe_exit, restart_helps

REPO = Path(__file__).resolve().parents[2]


def test_every_code_the_poller_chooses_has_a_name_and_a_restart_rule() -> None:
    assert describe_exit(4) == "exited 4 (bad row)"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exited 3 (fenced)"
    for code in (2, 4, 5, 6, 8):  # a person must act: configuration, row, permission, watermark
        assert code in EXIT_CODES and not restart_helps(code), code
    for code in (1, 3, 7, 137):  # a crash, fenced, unreachable at start, killed: may pass
        assert restart_helps(code), code


def test_the_command_leaves_its_error_for_a_worker(tmp_path: Path) -> None:
    config = tmp_path / "poller.yaml"
    config.write_text("tenant: t\nsource: {url: 'sqlite:///x.db', password: hunter2}\n")
    reason = tmp_path / "reason"
    env = {**os.environ, REASON_FILE_ENV: str(reason)}
    proc = subprocess.run(
        [sys.executable, "-m", "poller", "run", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr  # configuration
    said = reason.read_text()
    assert "source.password" in said and "hunter2" not in said
