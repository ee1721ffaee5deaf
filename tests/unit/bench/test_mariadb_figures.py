"""The bench's MariaDB figures: which driver each end-to-end run uses, and the issue's targets."""

from __future__ import annotations

from bench import e2e, report


def test_the_default_mariadb_run_takes_the_bare_url_and_pymysql_runs_name_it() -> None:
    auto = e2e.poller_config("mariadb", "customers")["source"]["url"]
    named = e2e.poller_config("mariadb", "customers", driver="pymysql")["source"]["url"]
    assert auto.startswith("mysql://") and named.startswith("mysql+pymysql://")
    pg = e2e.poller_config("postgresql", "customers")["source"]["url"]
    assert pg.startswith("postgresql+psycopg2://")


def test_mariadb_targets() -> None:
    got = report.check_targets(
        {"mariadb": {"mysqlclient_to_pymysql": 1.6, "confluent_to_single_object": 0.9}}
    )
    status = {t["target"]: t["status"] for t in got if t["database"] == "mariadb"}
    assert status["mysqlclient >= 1.5x PyMySQL"] == "PASS"
    assert status["Confluent >= 95% of single-object"] == "MISS"
    none = report.check_targets({"mariadb": {}})
    assert {t["status"] for t in none} == {"n/a"}
