"""A database password never shows: every CLI command, run with a known password in each URL
form (user:password@, ?password=, an ODBC connection string percent-encoded in odbc_connect,
and a wrong password), leaves no trace of it in stdout or stderr (where the logs go, as JSON
at DEBUG), whether the command succeeds or fails."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from tests.integration.faults.waits import free_port

pytestmark = pytest.mark.integration

POLLER = Path(sys.executable).with_name("poller")
# `demo --source` seeds the test database: two demos there at once would collide.
DEMO_FORMS = ("query", "wrong_password")
# The forms that cannot log in are tried with the commands that connect to the database.
ONLY = {
    "odbc_connect": {"check", "run", "status", "verify", "backfill"},
    "wrong_password": {"check", "run", "demo"},
    "sslpassword": {"check", "run"},  # issue 17: libpq's key password, shown by run's first line
}


class Secret:
    """A password whose core token is unique to the test: finding the token in any output, in
    any encoding of the password, is a leak."""

    def __init__(self) -> None:
        self.token = f"Zq7x{uuid.uuid4().hex[:12]}"
        self.value = f"{self.token}@:/%"  # characters that must be escaped in a URL

    def leaks(self, text: str) -> list[str]:
        forms = {self.token, self.value, quote(self.value, safe=""), quote_plus(self.value)}
        return sorted(f for f in forms if f in text)


@pytest.fixture
def secret_db(pg_url: str) -> Iterator[tuple[str, str, Secret]]:
    """(database URL without credentials, role, its secret): a login role with a unique
    password and a small customers table."""
    secret = Secret()
    role = f"sec_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(pg_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        # DDL takes no bind parameters; the password is a quoted literal of known characters.
        conn.execute(sa.text(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{secret.value}'"))
        conn.execute(
            sa.text(
                "CREATE TABLE customers (id bigint PRIMARY KEY, full_name text NOT NULL, "
                "updated_at timestamp NOT NULL)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO customers SELECT g, 'c' || g, timestamp '2024-01-01' + g * "
                "interval '1 minute' FROM generate_series(1, 5) g"
            )
        )
    bare = make_url(pg_url).set(username=None, password=None)
    try:
        yield bare.render_as_string(hide_password=False), role, secret
    finally:
        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"
                ),
                {"r": role},
            )
            conn.execute(sa.text(f"DROP OWNED BY {role}"))
            conn.execute(sa.text(f"DROP ROLE {role}"))
        engine.dispose()


def url_forms(bare: str, role: str, secret: Secret) -> dict[str, str]:
    u = make_url(bare)
    hostport, db = f"{u.host}:{u.port}", u.database
    odbc = (
        f"DRIVER={{FreeTDS}};SERVER=127.0.0.1;PORT={free_port()};DATABASE=crm;UID=sa;"
        f"PWD={{{secret.value}}};TDS_Version=7.4"
    )
    return {
        "userinfo": f"postgresql+psycopg2://{role}:{quote(secret.value, safe='')}@{hostport}/{db}",
        "query": f"postgresql+psycopg2://{role}@{hostport}/{db}?password={quote_plus(secret.value)}",
        "odbc_connect": f"mssql+pyodbc:///?odbc_connect={quote_plus(odbc)}",
        "sslpassword": f"postgresql+psycopg2://{role}@{hostport}/{db}"
        f"?password={quote_plus(secret.value)}&sslpassword={quote_plus(secret.value)}",
        # The secret of this form is the wrong one: a failed login must not show it either.
        "wrong_password": f"postgresql+psycopg2://{role}:"
        f"{quote(secret.value + 'x', safe='')}@{hostport}/{db}",
    }


def config(url: str, bootstrap: str, prefix: str) -> dict[str, Any]:
    return {
        "tenant": prefix,
        "source": {"url": url, "connect_timeout_s": 3},
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topic_prefix": prefix,
            "transactional_id_prefix": prefix,
            "format": "single_object",
        },
        "metrics": {"enabled": False},
        "logging": {"format": "json", "level": "DEBUG"},
        "retry": {"startup_timeout_s": 2, "max_attempts": 1},
        "entities": {
            "customers": {
                "table": "customers",
                "key": "id",
                "fields": {"local_id": "id", "full_name": "full_name", "updated_at": "updated_at"},
                "batching": {"mode": "timestamp", "column": "updated_at"},
                "settle_delay_s": 0,
            }
        },
    }


def commands(cfg: Path, url: str, tmp: Path, demo: bool) -> dict[str, list[str]]:
    c = str(cfg)
    every = {
        "check": ["check", "--config", c],
        "run": ["run", "--once", "--config", c],
        "status": ["status", "--config", c],
        "verify": ["verify", "--config", c],
        "offsets-show": ["offsets", "show", "--config", c, "--json"],
        "offsets-reset": ["offsets", "reset", "--config", c, "--entity", "customers", "--to",
                          "earliest"],
        "tail": ["tail", "--config", c, "--entity", "customers", "--limit", "1", "--timeout", "3"],
        "backfill": ["backfill", "--config", c, "--entity", "customers", "--from",
                     "2024-01-01T00:00:00", "--to", "2024-01-02T00:00:00", "--queue"],
        "tenants-put": ["tenants", "put", "--config", c, "--kafka", "127.0.0.1:9092"],
    }  # fmt: skip
    if demo:
        every["demo"] = ["demo", "--seed-only", "--source", url, "--tenant", "sec-demo",
                         "--config-out", str(tmp / "demo.yaml"), "--registry", ""]  # fmt: skip
    return every


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(POLLER), *args], cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )


def test_no_command_shows_the_password_in_any_url_form(
    secret_db: tuple[str, str, Secret], kafka_bootstrap: str, tmp_path: Path
) -> None:
    bare, role, secret = secret_db
    forms = url_forms(bare, role, secret)

    def run_form(form: str) -> list[str]:
        work = tmp_path / form
        work.mkdir()
        prefix = f"sec-{form.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
        path = work / "poller.yaml"
        path.write_text(yaml.safe_dump(config(forms[form], kafka_bootstrap, prefix)))
        found = []
        for name, args in commands(path, forms[form], work, demo=form in DEMO_FORMS).items():
            if form in ONLY and name not in ONLY[form]:
                continue
            proc = run_cli(args, work)
            output = proc.stdout + proc.stderr
            if leaked := secret.leaks(output):
                found.append(f"{form} / {name} (exit {proc.returncode}) shows {leaked}:\n{output}")
            if form in ("userinfo", "query", "sslpassword") and name in ("check", "run"):
                # The happy path prints the URL too ("ok: ... checked against <url>").
                assert proc.returncode == 0, f"{form} / {name}:\n{output}"
        return found

    with ThreadPoolExecutor(max_workers=len(forms)) as pool:
        leaks = [leak for found in pool.map(run_form, forms) for leak in found]
    assert not leaks, "\n\n".join(leaks)


def test_a_loaded_config_never_shows_its_secrets_in_repr_str_or_dumps(tmp_path: Path) -> None:
    """Passwords are typed as secrets in the model: repr/str/model_dump/JSON of a configuration
    holding the sweep's password in every URL form and every secret field show none of it."""
    from poller.config import load_config

    secret = Secret()
    forms = url_forms("postgresql+psycopg2://127.0.0.1:5432/db", "role", secret)
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    for form, url in forms.items():
        cfg = config(url, "127.0.0.1:9092", "sec-repr")
        cfg["kafka"]["options"] = {
            "security.protocol": "SASL_SSL",
            "sasl.username": "acme",
            "sasl.password": secret.value,
            "ssl.key.password": secret.value,
            "sasl.oauthbearer.client.secret": secret.value,
        }
        cfg["kafka"]["format"] = "confluent"
        cfg["kafka"]["layout"] = "per_tenant"
        cfg["schema_registry"] = {
            "url": f"https://u:{quote(secret.value, safe='')}@sr.example:8081",
            "basic_auth": {"user": "poller", "password": secret.value},
            "options": {"ssl.ca.location": str(ca), "bearer.auth.token": secret.value},
        }
        cfg["metrics"] = {"enabled": False, "basic_auth": {"user": "p", "password": secret.value}}
        path = tmp_path / f"{form}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        loaded = load_config(path)
        for what, text in (
            ("repr", repr(loaded)),
            ("str", str(loaded)),
            ("model_dump", str(loaded.model_dump())),
            ("model_dump_json", loaded.model_dump_json()),
        ):
            assert not secret.leaks(text), f"{form}: {what} shows the password:\n{text}"
        # ...while the clients still get the real values.
        assert loaded.kafka.client_options()["sasl.password"] == secret.value
