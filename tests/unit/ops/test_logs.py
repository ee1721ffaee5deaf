"""Log lines: JSON (or text) with tenant and entity on every line, and never a password."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from poller.ops.logs import JsonFormatter, TextFormatter, redact, setup_logging

SECRET = "S3cr3t-pw_9x"  # never in any output


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "no log output"
    out = []
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict)
        out.append(record)
    return out


# ------------------------------------------------------------------------------- redact


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql+psycopg2://poller:{SECRET}@db.example:5432/crm",
        f"connect failed: mysql+pymysql://u:{SECRET}@127.0.0.1/crm?charset=utf8mb4 (timeout)",
        f"'oracle+oracledb://scott:{SECRET}@host:1521/?service_name=x'",
        f"url=postgresql://:{SECRET}@host/db",  # empty user name
        f"postgresql://u:p@{SECRET}@host/db",  # unescaped '@' in the password
        f"postgresql://u:{SECRET}%40x@host/db",  # percent-encoded
        f"host=db port=5432 user=poller password={SECRET} dbname=crm",  # libpq DSN
        f"DRIVER={{ODBC Driver 18}};SERVER=db;UID=sa;PWD={SECRET};Encrypt=no",  # ODBC
        f"mssql+pyodbc://sa@db/crm?driver=x&Password={SECRET}&x=1",  # query parameter
        f"first postgresql://a:{SECRET}@h1/db then mysql://b:{SECRET}@h2/db",
        # odbc_connect percent-encodes the ODBC string: '=' is %3D, ';' is %3B (quote_plus)
        f"mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC+Driver+18%7D%3BUID%3Dsa%3BPWD%3D{SECRET}"
        "%3BEncrypt%3Dno",
        f"mssql+pyodbc:///?odbc_connect=driver%3dx%3buid%3dsa%3bpwd%3d{SECRET}%3b",  # lower case
        f"odbc_connect=DRIVER%253Dx%253BPWD%253D{SECRET}%253B",  # encoded twice
        f"DRIVER=x;UID=sa;PWD={{{SECRET};with;semicolons}};Encrypt=no",  # braced ODBC value
        f"odbc_connect=DRIVER%3Dx%3BPWD%3D%7B{SECRET}%3Bx%7D%3BUID%3Dsa",  # braced and encoded
        f"host=db password = {SECRET} dbname=crm",  # spaces around '='
        # issue 17: every *password* / *secret* / *token* key, and basic.auth.user.info
        f"postgresql://u@db/crm?sslpassword={SECRET}&sslmode=verify-full",
        f"oracle+oracledb://u@h/?ssl_key_password={SECRET}",
        f"oracle+oracledb://u@h/?wallet_password={SECRET}&x=1",
        f"client_secret={SECRET}",
        f"https://idp/token?access_token={SECRET}",
        f"basic.auth.user.info=user:{SECRET}",
        f"{{'sasl.password': '{SECRET}', 'sasl.username': 'acme'}}",
        f'{{"sasl.oauthbearer.client.secret": "{SECRET}"}}',
        f"odbc_connect=DRIVER%3Dx%3Bssl_key_password%3D{SECRET}%3B",
    ],
)
def test_redact_hides_password(text: str) -> None:
    out = redact(text)
    assert SECRET not in out
    assert "***" in out


@pytest.mark.parametrize(
    "text",
    [
        "postgresql+psycopg2://poller@db.example:5432/crm",
        "polling customers from postgresql://poller:***@db/crm",
        "FATAL: password authentication failed for user poller",
        "mail alice@example.com about http://example.com:8080/x",
        "ratio 3:2 at 12:00",
    ],
)
def test_redact_leaves_harmless_text(text: str) -> None:
    assert redact(text) == text


# ---------------------------------------------------------------------------- formatters


def test_json_lines_carry_tenant_and_entity(
    capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    setup_logging("json", "DEBUG", tenant="acme-corp")
    log = logging.getLogger("poller.test")
    log.info("tenant-wide line")
    log.warning("entity line", extra={"entity": "receipts"})
    log.info("other tenant", extra={"tenant": "beta", "entity": "customers"})
    log.debug("two\nlines in one record")
    logging.getLogger("some.library").error("third-party line")
    records = json_lines(capsys.readouterr().err)
    assert len(records) == 5
    for r in records:
        assert {"time", "level", "logger", "tenant", "entity", "message"} <= set(r)
    assert [(r["tenant"], r["entity"]) for r in records] == [
        ("acme-corp", ""),
        ("acme-corp", "receipts"),
        ("beta", "customers"),
        ("acme-corp", ""),
        ("acme-corp", ""),
    ]
    assert records[1]["level"] == "WARNING"
    assert records[3]["message"] == "two\nlines in one record"
    assert records[4]["logger"] == "some.library"


def test_json_lines_never_hold_a_password(
    capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    setup_logging("json", "DEBUG", tenant="acme-corp")
    log = logging.getLogger("poller.test")
    url = f"postgresql+psycopg2://poller:{SECRET}@127.0.0.1:1/crm"
    log.info("connecting to %s", url, extra={"entity": "customers"})
    try:
        raise ConnectionError(f"could not connect to {url}")
    except ConnectionError:
        log.exception("database gone", extra={"entity": "customers"})
    out = capsys.readouterr().err
    assert SECRET not in out
    records = json_lines(out)
    assert records[0]["message"] == "connecting to postgresql+psycopg2://poller:***@127.0.0.1:1/crm"
    assert (
        "ConnectionError: could not connect to postgresql+psycopg2://poller:***@"
        in (records[1]["exception"])
    )


def test_text_lines(capsys: pytest.CaptureFixture[str], restore_root_logger: None) -> None:
    setup_logging("text", "INFO", tenant="acme-corp")
    log = logging.getLogger("poller.test")
    log.info("from mysql+pymysql://u:%s@h/db", SECRET, extra={"entity": "events"})
    log.info("tenant-wide")
    log.debug("hidden at INFO")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert "INFO [acme-corp/events] from mysql+pymysql://u:***@h/db" in lines[0]
    assert lines[1].endswith("INFO [acme-corp] tenant-wide")
    assert SECRET not in "\n".join(lines)


def test_formatters_without_the_filter() -> None:
    """A record that bypassed the context filter (e.g. another handler) still formats."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "p %s", (SECRET,), None)
    record.msg = "postgresql://u:%s@h/db"
    assert json.loads(JsonFormatter().format(record))["entity"] == ""
    assert SECRET not in JsonFormatter().format(record)
    record.tenant, record.entity = "t", ""
    assert SECRET not in TextFormatter().format(record)


# ----------------------------------------------------------------------------------- CLI


def run_cli(tmp_path: Path, config: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "poller.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "poller", "run", "--config", str(path), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def base_config(url: str) -> dict[str, Any]:
    return {
        "tenant": "acme-corp",
        "source": {"url": url},
        "kafka": {"bootstrap_servers": "127.0.0.1:1", "format": "single_object"},
        "logging": {"format": "json", "level": "DEBUG"},
        "metrics": {"enabled": False},
        "entities": {
            "customers": {
                "table": "customers",
                "key": "id",
                "fields": {"local_id": "id"},
                "batching": {"mode": "id", "column": "id"},
            }
        },
    }


def test_cli_config_errors_never_show_the_password(tmp_path: Path) -> None:
    # An unparsable URL (the port) with a password in it.
    bad_url = base_config(f"postgresql+psycopg2://poller:{SECRET}@127.0.0.1:notaport/crm")
    proc = run_cli(tmp_path, bad_url)
    assert proc.returncode == 2, proc.stderr
    assert "source.url" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr

    # A valid URL, but another problem in the file.
    cfg = base_config(f"postgresql+psycopg2://poller:{SECRET}@127.0.0.1:1/crm")
    cfg["entities"]["customers"]["batch_size"] = 0
    proc = run_cli(tmp_path, cfg)
    assert proc.returncode == 2, proc.stderr
    assert "batch_size" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
