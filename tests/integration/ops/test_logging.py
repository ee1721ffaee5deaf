"""Logs are JSON lines with tenant and entity, and the password never reaches them."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.integration.conftest import unique_name
from tests.integration.ops.harness import (
    Proc,
    Source,
    check_log_lines,
    delete_topics,
    free_port,
    poller_config,
    tail,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("failure", ["wrong_password", "unreachable"])
def test_password_never_logged_when_the_database_fails(
    tmp_path: Path, source: Source, kafka_bootstrap: str, procs: list[Proc], failure: str
) -> None:
    """A failing database: the poller retries, gives up, and logs why - never the password."""
    tenant = unique_name("obs-fail")
    secret = "S3cr3t-" + secrets.token_hex(8)
    url = make_url(source.poller_url).set(password=secret)
    if failure == "unreachable":
        url = url.set(port=free_port())
    config, prefix = poller_config(
        tmp_path,
        url.render_as_string(hide_password=False),
        kafka_bootstrap,
        tenant,
        free_port(),
        max_attempts=2,
        startup_timeout_s=3,
    )
    proc = Proc(
        [sys.executable, "-m", "poller", "run", "--config", str(config)],
        tmp_path / "poller.log",
    )
    procs.append(proc)
    try:
        code = proc.proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the poller did not give up after 2 retries\n{tail(proc.log_path)}")
    finally:
        proc.stop()
        delete_topics(kafka_bootstrap, prefix)
    text = proc.log_path.read_text(encoding="utf-8", errors="replace")
    assert code not in (0, None), text
    assert secret not in text, f"the password leaked:\n{text}"
    # The last line is the CLI's own error message; every log line before it is JSON.
    *log_lines, last = [line for line in text.splitlines() if line.strip()]
    assert last.startswith("poller: error: "), last
    log_file = tmp_path / "log-lines.jsonl"
    log_file.write_text("\n".join(log_lines), encoding="utf-8")
    records = check_log_lines(log_file, tenant, secret)
    assert any("***@" in r["message"] for r in records), "the source URL was never logged"
    assert any(r["level"] == "WARNING" and "retry" in r["message"] for r in records), text
