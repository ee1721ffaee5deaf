"""The SQL of the model test per database: the shared `items` table, the writers' statements and
the probes that show a session waiting for a lock.

Every value is bound; the only text built here is the list of value placeholders of a multi-row
INSERT and the stamp expression, both chosen from fixed strings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

# How each write stamps `updated_at`: the database's transaction start (PostgreSQL now()) or
# statement start (MariaDB NOW(6)), the wall clock at evaluation, a BEFORE trigger, or the
# application's clock (bound as a parameter).
STAMPS = ("now", "clock", "trigger", "app")


@dataclass(frozen=True)
class Dialect:
    name: str  # "postgresql" | "mariadb"
    ddl: tuple[str, ...]
    drop: tuple[str, ...]
    stamp_sql: dict[str, str]
    take_id_sql: str
    lock_sql: dict[str, str]  # kind -> statement; "writes": writers queue, "all": readers too
    begin_sql: str
    begin_ro_sql: str
    session_id_sql: str
    waiting_sql: str  # one row (state) for a session id: is it waiting for a lock?
    others_waiting_sql: str  # sessions of this database waiting for a lock, writers excluded
    open_sql: str  # open transactions the poller's horizon sees, for a failure's report

    def insert_sql(self, n_rows: int, with_ids: bool, stamp: str) -> str:
        expr = self.stamp_sql[stamp]
        one = f"(%s, %s, %s, %s, {expr})" if with_ids else f"(%s, %s, %s, {expr})"
        cols = "id, tenant, full_name, stamped_by" if with_ids else "tenant, full_name, stamped_by"
        values = ", ".join([one] * n_rows)
        sql = f"INSERT INTO items ({cols}, updated_at) VALUES {values}"  # noqa: S608
        return sql + " RETURNING id, full_name"

    def update_sql(self, stamp: str) -> str:
        expr = self.stamp_sql[stamp]
        return (
            f"UPDATE items SET full_name = %s, stamped_by = %s, updated_at = {expr} "  # noqa: S608
            "WHERE id = %s"
        )

    @property
    def is_postgres(self) -> bool:
        return self.name == "postgresql"


POSTGRES = Dialect(
    name="postgresql",
    ddl=(
        "CREATE TABLE items (id bigserial PRIMARY KEY, tenant text NOT NULL, "
        "full_name text NOT NULL, stamped_by text NOT NULL, updated_at timestamptz NOT NULL)",
        "CREATE INDEX items_cursor ON items (updated_at, id)",
        "CREATE INDEX items_tenant ON items (tenant, updated_at, id)",
        # The trigger stamps the wall clock; `now` (the transaction start) is the plain kind.
        "CREATE FUNCTION items_stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.stamped_by = 'trigger' THEN NEW.updated_at := clock_timestamp(); END IF; "
        "RETURN NEW; END $$",
        "CREATE TRIGGER items_stamp BEFORE INSERT OR UPDATE ON items "
        "FOR EACH ROW EXECUTE FUNCTION items_stamp()",
    ),
    drop=("DROP TABLE IF EXISTS items", "DROP FUNCTION IF EXISTS items_stamp()"),
    stamp_sql={
        "now": "now()",
        "clock": "clock_timestamp()",
        "trigger": "now()",  # replaced by the trigger
        "app": "%s",
    },
    take_id_sql="SELECT nextval('items_id_seq')",
    lock_sql={
        "writes": "LOCK TABLE items IN EXCLUSIVE MODE",
        "all": "LOCK TABLE items IN ACCESS EXCLUSIVE MODE",
    },
    begin_sql="BEGIN",
    begin_ro_sql="BEGIN READ ONLY",
    session_id_sql="SELECT pg_backend_pid()",
    waiting_sql="SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
    others_waiting_sql=(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND pid <> ALL(%s)"
    ),
    open_sql=(
        "SELECT concat_ws(' ', 'pid', pid, 'xid', backend_xid, 'since', xact_start, state, "
        "left(query, 60)) FROM pg_stat_activity WHERE datname = current_database() "
        "AND xact_start IS NOT NULL AND pid <> pg_backend_pid()"
    ),
)

MARIADB = Dialect(
    name="mariadb",
    ddl=(
        # Auto-increment ids are odd (the writers' sessions set increment 2, offset 1); ids an
        # application reserves ahead from the sequence (Hibernate's SEQUENCE ids) are even.
        "CREATE SEQUENCE items_seq START WITH 2 INCREMENT BY 2",
        "CREATE TABLE items (id BIGINT AUTO_INCREMENT PRIMARY KEY, tenant VARCHAR(60) NOT NULL, "
        "full_name VARCHAR(100) NOT NULL, stamped_by VARCHAR(10) NOT NULL, "
        "updated_at DATETIME(6) NOT NULL, KEY items_cursor (updated_at, id), "
        "KEY items_tenant (tenant, updated_at, id)) ENGINE=InnoDB",
        "CREATE TRIGGER items_stamp_i BEFORE INSERT ON items FOR EACH ROW "
        "SET NEW.updated_at = IF(NEW.stamped_by = 'trigger', NOW(6), NEW.updated_at)",
        "CREATE TRIGGER items_stamp_u BEFORE UPDATE ON items FOR EACH ROW "
        "SET NEW.updated_at = IF(NEW.stamped_by = 'trigger', NOW(6), NEW.updated_at)",
    ),
    drop=("DROP TABLE IF EXISTS items", "DROP SEQUENCE IF EXISTS items_seq"),
    stamp_sql={
        "now": "NOW(6)",
        "clock": "SYSDATE(6)",
        "trigger": "NOW(6)",  # replaced by the trigger
        "app": "%s",
    },
    take_id_sql="SELECT NEXTVAL(items_seq)",
    lock_sql={"writes": "LOCK TABLES items READ", "all": "LOCK TABLES items WRITE"},
    begin_sql="START TRANSACTION",
    begin_ro_sql="START TRANSACTION READ ONLY",
    session_id_sql="SELECT CONNECTION_ID()",
    waiting_sql=(
        "SELECT state LIKE 'Waiting for table%%' FROM information_schema.processlist WHERE id = %s"
    ),
    others_waiting_sql=(
        "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() "
        "AND state LIKE 'Waiting for table%%' AND NOT FIND_IN_SET(id, %s)"
    ),
    open_sql=(
        "SELECT concat_ws(' ', 'thread', t.trx_mysql_thread_id, 'db', p.db, 'since', "
        "t.trx_started, 'read_only', t.trx_is_read_only, left(p.info, 60)) "
        "FROM information_schema.innodb_trx t LEFT JOIN information_schema.processlist p "
        "ON p.id = t.trx_mysql_thread_id WHERE t.trx_mysql_thread_id <> CONNECTION_ID()"
    ),
)

DIALECTS = {"postgresql": POSTGRES, "mariadb": MARIADB}


def app_stamp(dialect: Dialect, value: dt.datetime) -> dt.datetime:
    """The application's stamp as its driver binds it: aware for timestamptz, naive UTC for
    MariaDB's DATETIME (the server and the poller's source.timezone are UTC)."""
    return value if dialect.is_postgres else value.replace(tzinfo=None)
