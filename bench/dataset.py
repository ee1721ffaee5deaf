"""The benchmark's source table: a 16-column retail CRM `customers` table of one tenant, made
inside the database (PostgreSQL: generate_series; MariaDB: the SEQUENCE engine's seq_ tables).

Values are deterministic functions of the row number g, so every run and both databases hold
the same rows: Cyrillic names (multi-byte UTF-8), ~40% NULL middle names, some NULL phones and
birth dates, naive timestamps with microseconds. A table is reused while its row count and
GENERATOR_VERSION match its entry in `bench_meta`, otherwise it is dropped and rebuilt.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, make_url

GENERATOR_VERSION = "1"
# Its own database per bench user (POLLER_BENCH_DB), so two people benching at once on one
# server do not rebuild each other's tables under a run.
BENCH_DB = os.environ.get("POLLER_BENCH_DB", "poller_bench")
TENANT = "bench-tenant"

ADMIN_URLS = {
    "postgresql": os.environ.get(
        "POLLER_BENCH_PG_ADMIN_URL",
        "postgresql+psycopg2://poller:poller@127.0.0.1:5432/poller_test",
    ),
    "mariadb": os.environ.get(
        "POLLER_BENCH_MARIADB_ADMIN_URL",
        "mysql+pymysql://poller:poller@127.0.0.1:3306/poller_test?charset=utf8mb4",
    ),
}

MALE = ("Иван", "Алексей", "Дмитрий", "Сергей", "Андрей", "Михаил", "Николай", "Павел",
        "Артём", "Владимир")  # fmt: skip
FEMALE = ("Анна", "Мария", "Елена", "Ольга", "Наталья", "Татьяна", "Ирина", "Светлана",
          "Екатерина", "Юлия")  # fmt: skip
PATRONYMIC_M = ("Иванович", "Петрович", "Сергеевич", "Александрович", "Дмитриевич")
PATRONYMIC_F = ("Ивановна", "Петровна", "Сергеевна", "Александровна", "Дмитриевна")
SURNAMES = ("Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов",
            "Михайлов", "Новиков", "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев",
            "Семёнов", "Егоров", "Павлов", "Козлов", "Степанов", "Николаев")  # fmt: skip
LATIN = ("ivan", "alex", "dmitry", "sergey", "anna", "maria", "elena", "olga", "pavel", "yulia")
DOMAINS = ("mail.ru", "yandex.ru", "gmail.com", "example.com", "bk.ru")
COUNTRIES = ("Россия",) * 8 + ("Казахстан", "Беларусь")
AREAS = ("Московская обл.", "Ленинградская обл.", "Свердловская обл.",
         "Новосибирская обл.", "Краснодарский край", "Республика Татарстан", "Самарская обл.",
         "Ростовская обл.")  # fmt: skip
FEMININE = "\u0430"  # Cyrillic small a: Иванов -> Иванова
CITIES = ("Москва", "Санкт-Петербург", "Екатеринбург", "Новосибирск", "Краснодар", "Казань",
          "Самара", "Ростов-на-Дону", "Нижний Новгород", "Челябинск", "Омск", "Уфа")  # fmt: skip

COLUMNS = (
    "customer_id", "user_id", "f_name", "m_name", "l_name", "email", "phone", "gender", "b_date",
    "country", "area", "city", "post_index", "reg_date", "updated_at", "card_no",
)  # fmt: skip

# The customers schema's fields -> source columns or SQL (valid in both databases): the poller
# config's `fields:` and the raw fetch's SELECT list. card_no is read by neither.
FIELDS = {
    "local_id": "customer_id",
    "full_name": "concat_ws(' ', f_name, m_name, l_name)",
    "first_name": "f_name",
    "middle_name": "m_name",
    "last_name": "l_name",
    "email": "email",
    "phone": "phone",
    "sex": "gender",
    "birth_date": "b_date",
    "country": "country",
    "area": "area",
    "city": "city",
    "zip": "post_index",
    "register_date": "reg_date",
    "updated_at": "updated_at",
}


@dataclass(frozen=True)
class Dialect:
    """The few SQL spellings that differ between the two databases."""

    name: str

    def pick(self, values: Sequence[str], index: str) -> str:
        """values[index mod len], index an SQL integer expression."""
        quoted = ", ".join(f"'{v}'" for v in values)
        if self.name == "postgresql":
            return f"(ARRAY[{quoted}])[(({index}) % {len(values)})::int + 1]"
        return f"ELT((({index}) % {len(values)}) + 1, {quoted})"

    def text(self, expr: str) -> str:
        return f"({expr})::text" if self.name == "postgresql" else f"CAST({expr} AS CHAR)"

    def plus_days(self, base: str, days: str) -> str:
        if self.name == "postgresql":
            return f"(DATE '{base}' + ({days})::int)"
        return f"(DATE '{base}' + INTERVAL ({days}) DAY)"

    def plus_micros(self, base: str, micros: str) -> str:
        if self.name == "postgresql":
            return f"({base} + ({micros}) * INTERVAL '1 microsecond')"
        return f"({base} + INTERVAL ({micros}) MICROSECOND)"


def select_rows(d: Dialect, g: str) -> str:
    """SELECT list (in COLUMNS order) of row number g."""
    male = f"{g} % 2 = 0"
    reg = d.plus_micros("TIMESTAMP '2015-01-01 00:00:00'", f"({g} * 104729 % 300000000) * 1000000")
    return ",\n".join([
        g,
        f"'{TENANT}'",
        f"CASE WHEN {male} THEN {d.pick(MALE, f'{g} * 7')} ELSE {d.pick(FEMALE, f'{g} * 7')} END",
        f"CASE WHEN {g} % 5 < 2 THEN NULL WHEN {male} THEN {d.pick(PATRONYMIC_M, f'{g} * 3')} "
        f"ELSE {d.pick(PATRONYMIC_F, f'{g} * 3')} END",
        f"concat({d.pick(SURNAMES, f'{g} * 13')}, CASE WHEN {male} THEN '' ELSE '{FEMININE}' END)",
        f"concat({d.pick(LATIN, f'{g} * 11')}, '.', {d.text(g)}, '@', {d.pick(DOMAINS, g)})",
        f"CASE WHEN {g} % 10 = 3 THEN NULL ELSE concat('+7 9', "
        f"lpad({d.text(f'{g} * 7919 % 1000000000')}, 9, '0')) END",
        f"CASE WHEN {male} THEN 'M' ELSE 'F' END",
        f"CASE WHEN {g} % 20 = 7 THEN NULL "
        f"ELSE {d.plus_days('1950-01-01', f'{g} * 7919 % 20000')} END",
        d.pick(COUNTRIES, f"{g} * 17"),
        d.pick(AREAS, f"{g} * 19"),
        d.pick(CITIES, f"{g} * 23"),
        f"lpad({d.text(f'{g} * 31 % 1000000')}, 6, '0')",
        reg,
        d.plus_micros(reg, f"({g} * 31337 % 10000000) * 1000000 + {g} % 1000000"),
        f"concat('2', lpad({d.text(g)}, 12, '0'))",
    ])  # fmt: skip


def _ddl(d: Dialect, table: str) -> str:
    ts = "timestamp" if d.name == "postgresql" else "datetime(6)"
    tail = "" if d.name == "postgresql" else " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
    return (
        f"CREATE TABLE {table} (customer_id bigint NOT NULL PRIMARY KEY, "
        "user_id varchar(64) NOT NULL, f_name varchar(100), m_name varchar(100), "
        "l_name varchar(100), email varchar(255), phone varchar(32), gender varchar(1), "
        "b_date date, country varchar(64), area varchar(128), city varchar(128), "
        f"post_index varchar(16), reg_date {ts}, updated_at {ts}, card_no varchar(32)){tail}"
    )


def service_ports() -> dict[str, int]:
    return {db: make_url(url).port or (5432 if db == "postgresql" else 3306)
            for db, url in ADMIN_URLS.items()}  # fmt: skip


def bench_url(database: str) -> str:
    """SQLAlchemy URL of the poller_bench database (the admin URL's server and user)."""
    return make_url(ADMIN_URLS[database]).set(database=BENCH_DB).render_as_string(False)


def ensure_database(database: str) -> Engine:
    admin = sa.create_engine(ADMIN_URLS[database], isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        if database == "postgresql":
            found = c.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": BENCH_DB}
            )
            if not found:
                c.exec_driver_sql(f"CREATE DATABASE {BENCH_DB}")
        else:
            c.exec_driver_sql(f"CREATE DATABASE IF NOT EXISTS {BENCH_DB} CHARACTER SET utf8mb4")
    admin.dispose()
    return sa.create_engine(bench_url(database), isolation_level="AUTOCOMMIT")


def _stored_rows(c: Connection, table: str) -> int | None:
    c.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS bench_meta (table_name varchar(64) PRIMARY KEY, "
        "row_count bigint NOT NULL, version varchar(16) NOT NULL)"
    )
    row = c.execute(
        sa.text("SELECT row_count, version FROM bench_meta WHERE table_name = :t"), {"t": table}
    ).first()
    if row is None or row[1] != GENERATOR_VERSION:
        return None
    return int(row[0])


def _exec(c: Connection, sql: str) -> None:
    """Run generated SQL (made from this module's constants and integers only) through the
    driver, whose paramstyle needs '%' doubled."""
    c.exec_driver_sql(sql.replace("%", "%%"))


def ensure_table(engine: Engine, database: str, table: str, rows: int) -> float:
    """Make `table` hold exactly `rows` generated rows; returns seconds spent (0 if reused)."""
    d = Dialect(database)
    with engine.connect() as c:
        if _stored_rows(c, table) == rows:
            return 0.0
        t0 = time.perf_counter()
        c.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        c.exec_driver_sql(_ddl(d, table))
        if database == "postgresql":
            _exec(
                c,
                f"INSERT INTO {table} SELECT {select_rows(d, 'g')} "  # noqa: S608
                f"FROM generate_series(1::bigint, {rows}) AS g",
            )
            c.exec_driver_sql(f"VACUUM (ANALYZE, FREEZE) {table}")  # no hint-bit writes later
        else:
            step = 100_000
            for lo in range(1, rows + 1, step):
                hi = min(rows, lo + step - 1)
                _exec(
                    c,
                    f"INSERT INTO {table} SELECT {select_rows(d, 's.seq')} "  # noqa: S608
                    f"FROM seq_{lo}_to_{hi} AS s",
                )
            c.exec_driver_sql(f"ANALYZE TABLE {table}")
        c.execute(sa.text("DELETE FROM bench_meta WHERE table_name = :t"), {"t": table})
        c.execute(
            sa.text("INSERT INTO bench_meta VALUES (:t, :n, :v)"),
            {"t": table, "n": rows, "v": GENERATOR_VERSION},
        )
        return time.perf_counter() - t0
