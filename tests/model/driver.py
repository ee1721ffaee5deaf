"""Runs schedules against the real database and Kafka, step by step, keeps the ledger of
committed rows and asks the oracle after each schedule's final drain.

One `ModelRun` per (database, batching mode): one table shared by two tenants, one topic prefix,
one poller of the first tenant; its schedules run one after the other on that table. A schedule
only updates rows it inserted itself, so a failing one replays on a fresh table by itself.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from tests.integration.faults.readback import TopicEnds
from tests.model.dialects import DIALECTS, app_stamp
from tests.model.oracle import Ledger, RowModel, TopicReader, check
from tests.model.pollers import SETTLE_S, PollerHost, config_dict
from tests.model.schedule import MINE, Step, render
from tests.model.sessions import Session, wait_until


class ScheduleFailed(AssertionError):
    pass


class ModelRun:
    def __init__(
        self, db: str, mode: str, url: str, bootstrap: str, workdir: Path, writers: int = 3
    ) -> None:
        self.db, self.mode, self.url = db, mode, url
        self.dialect = DIALECTS[db]
        token = uuid.uuid4().hex[:8]
        self.tenants = {MINE: f"model-{token}-a", "other": f"model-{token}-b"}
        self.prefix = f"model_{token}"
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.admin = Session(self.dialect, url, "admin")
        for stmt in (*self.dialect.drop, *self.dialect.ddl):  # a run after a failed one: anew
            self.admin.execute(stmt)
        self.writers = [Session(self.dialect, url, f"w{i}") for i in range(writers)]
        self.host = PollerHost(
            config_dict(url, self.tenants[MINE], mode, bootstrap, self.prefix), workdir
        )
        self.ends = TopicEnds(bootstrap)
        self.ledger = Ledger()
        self.host.drain()  # creates the topics; nothing to read yet
        self.reader = TopicReader(bootstrap, self.host.topic)
        self.schedules = 0
        self.figures: Counter[str] = Counter()  # what the runs did, for the summary line

    # -- one schedule ---------------------------------------------------------------------------

    def run(self, seed: int, steps: list[Step], cli_drain: bool = False) -> None:
        """Run one schedule; raises ScheduleFailed with the seed, the problems and the replay."""
        self.schedules += 1
        self._seed = seed
        self._ids: dict[str, int] = {}  # handles of rows and taken ids -> ids
        self._versions: dict[str, int] = {}
        done = 0
        try:
            for step in steps:
                if step["op"] == "drain":
                    self._drain(cli_drain)
                else:
                    self._step(step)
                done += 1
                self.figures[step["op"] + ("(blocked)" if step.get("blocks") else "")] += 1
        except ScheduleFailed as exc:
            self._abandon()
            raise ScheduleFailed(self._report(seed, steps, done, str(exc))) from None
        except Exception as exc:
            self._abandon()
            what = f"{type(exc).__name__}: {exc}"
            raise ScheduleFailed(self._report(seed, steps, done, what)) from exc

    def _report(self, seed: int, steps: list[Step], done: int, what: str) -> str:
        replay = self.workdir / f"{self.db}-{self.mode.replace('+', '_')}-{seed}.json"
        replay.write_text(render(self.db, self.mode, seed, steps), encoding="utf-8")
        at = f"step {done} {steps[done]}" if done < len(steps) else "the end"
        return (
            f"model test failed: db {self.db}, mode {self.mode}, seed {seed} (schedule "
            f"{self.schedules} of this run), at {at}:\n{what}\n"
            f"replay: cp {replay} tests/model/replays/ && pytest tests/model/test_replays.py\n"
            f"or: MODEL_SEED={seed} MODEL_SCHEDULES=1 pytest tests/model/test_interleavings.py "
            f"-k '{self.db} and {self.mode}'\n{replay.read_text(encoding='utf-8')}"
        )

    def _step(self, step: Step) -> None:
        op = step["op"]
        if op == "sleep":
            time.sleep(step["ms"] / 1000)
        elif op == "pass":
            self._pass(step["blocks"])
        elif op == "restart":
            self.host.close()
        elif op == "kill":
            what = self.host.kill_mid_run(step["after_batches"], self.ends)
            self.figures["killed with a transaction open" if "open" in what else "killed idle"] += 1
        else:
            self._writer_step(self.writers[step["w"]], step)

    def _writer_step(self, s: Session, step: Step) -> None:
        op, w, d = step["op"], step["w"], self.dialect
        if op in ("begin", "begin_ro"):
            s.execute(d.begin_sql if op == "begin" else d.begin_ro_sql)
            s.began_at = dt.datetime.now(dt.UTC)
            if op == "begin_ro":
                s.call(lambda c: s.scalar(c, "SELECT count(*) FROM items"))
        elif op == "take_id":
            self._ids[step["id"]] = int(s.call(lambda c: s.scalar(c, d.take_id_sql)))
        elif op == "insert":
            self._insert(s, step)
        elif op == "update":
            self._update(s, step)
        elif op == "commit":
            s.execute("COMMIT")
            self.ledger.commit(w)
        elif op == "rollback":
            s.execute("ROLLBACK")
            self.ledger.rollback(w)
        elif op == "lock":
            if d.is_postgres:
                s.execute(d.begin_sql)
            s.execute(d.lock_sql[step["kind"]])
        elif op == "unlock":
            s.execute("COMMIT" if d.is_postgres else "UNLOCK TABLES")
            self.ledger.commit(w)
            self._release_waiters()
        else:
            raise ScheduleFailed(f"unknown step {step}")

    def _stamp(self, s: Session, kind: str) -> list[Any]:
        """The application's clock (milliseconds, like Java's), taken inside its transaction."""
        if kind != "app":
            return []
        while True:
            now = dt.datetime.now(dt.UTC)
            stamp = now.replace(microsecond=now.microsecond // 1000 * 1000)
            if s.began_at is None or stamp >= s.began_at:
                return [app_stamp(self.dialect, stamp)]
            time.sleep(0.0005)

    def _version(self, handle: str) -> str:
        n = self._versions[handle] = self._versions.get(handle, 0) + 1
        return f"{self._seed}:{handle}:{n}"

    def _insert(self, s: Session, step: Step) -> None:
        w, kind, tenant = step["w"], step["stamp"], self.tenants[step["tenant"]]
        explicit = step["ids"][0] is not None
        params: list[Any] = []
        versions = [self._version(h) for h in step["rows"]]
        for taken, version in zip(step["ids"], versions, strict=True):
            params += [self._ids[taken]] if explicit else []
            params += [tenant, version, kind, *self._stamp(s, kind)]
        sql = self.dialect.insert_sql(len(step["rows"]), explicit, kind)

        def run(conn: Any) -> dict[str, int]:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return {str(r[1]): int(r[0]) for r in cur.fetchall()}

        def done(ids: dict[str, int]) -> None:
            if sorted(ids) != sorted(versions):
                raise ScheduleFailed(f"insert returned {ids} for versions {versions}")
            for h, version in zip(step["rows"], versions, strict=True):
                row_id = self._ids[h] = ids[version]
                self.ledger.rows[row_id] = RowModel(tenant, f"seed {self._seed} {h}")
                self.ledger.written(w, row_id, version, step["autocommit"])

        self._submit(s, run, done, step["blocks"])

    def _update(self, s: Session, step: Step) -> None:
        h, kind = step["row"], step["stamp"]
        row_id, version = self._ids[h], self._version(h)
        params = [version, kind, *self._stamp(s, kind), row_id]
        sql = self.dialect.update_sql(kind)

        def run(conn: Any) -> int:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return int(cur.rowcount)

        def done(n: int) -> None:
            if n != 1:
                raise ScheduleFailed(f"update of {h} (id {row_id}) changed {n} rows")
            self.ledger.written(step["w"], row_id, version, False)

        self._submit(s, run, done, step["blocks"])

    def _submit(self, s: Session, run: Callable[[Any], Any], done: Callable[[Any], None],
                blocks: bool) -> None:  # fmt: skip
        future = s.submit(run)
        if not blocks:
            done(future.result(timeout=60))
            return
        # It must wait behind the lock (it has taken its NOW(6) already); it ends at unlock.
        waiting = self.admin
        wait_until(
            lambda: future.done() or bool(waiting.call(
                lambda c: waiting.scalar(c, self.dialect.waiting_sql, (s.session_id,)))),
            30, f"{s.label} to wait behind the table lock",
        )  # fmt: skip
        if future.done():
            future.result()  # its error, if any
            raise ScheduleFailed(f"{s.label}: the statement did not wait behind the lock")
        s.pending, s.on_done = future, done

    def _pass(self, blocks: bool) -> None:
        future = self.host.start_pass()
        if not blocks:
            future.result(timeout=300)
            return
        ids = [x.session_id for x in self.writers] + [self.admin.session_id]
        arg: Any = ids if self.dialect.is_postgres else ",".join(map(str, ids))
        sql = self.dialect.others_waiting_sql
        wait_until(
            lambda: future.done() or bool(self.admin.call(lambda c: self.admin.scalar(c, sql,
                                                                                      (arg,)))),
            30, "the poller's read to wait behind the table lock",
        )  # fmt: skip
        self.host.pending = future

    def _release_waiters(self) -> None:
        for s in self.writers:
            if s.pending is not None:
                future, s.pending = s.pending, None
                s.on_done(future.result(timeout=60))
        if self.host.pending is not None:
            future2: cf.Future[None] = self.host.pending
            self.host.pending = None
            future2.result(timeout=300)

    def _drain(self, cli: bool) -> None:
        # Every writer has ended; rows stamped in the last settle_delay_s wait by design.
        time.sleep(SETTLE_S + 0.1)
        sql = self.dialect.open_sql
        held = self.admin.call(lambda c: self.admin.column(c, sql))
        if cli:
            rc, log = self.host.run_once_process()
            if rc != 0:
                raise ScheduleFailed(f"`poller run --once` exited {rc}:\n{log}")
        else:
            self.host.drain()
        before = len(self.reader.messages)
        self.reader.read_new()
        self.figures["messages"] += len(self.reader.messages) - before
        self.figures["cli drains"] += cli
        problems = check(self.ledger, self.reader.messages, self.tenants[MINE], self.mode)
        if problems:
            shown = "\n  ".join(problems[:30])
            more = f"\n  ... {len(problems)} problems in all" if len(problems) > 30 else ""
            how = "`poller run --once` (exit 0)" if cli else "the final drain (caught up)"
            seen = "\n  ".join(held) or "none"
            raise ScheduleFailed(
                f"after {how}:\n  {shown}{more}\nopen transactions the horizon saw at the drain "
                f"(every writer of the schedule had ended):\n  {seen}"
            )

    # -- cleanup ----------------------------------------------------------------------------------

    def _abandon(self) -> None:
        """After a failure: end every session's transaction and lock, drop waiting statements."""
        for s in self.writers:
            with contextlib.suppress(Exception):
                s.execute("ROLLBACK" if self.dialect.is_postgres else "UNLOCK TABLES")
                if not self.dialect.is_postgres:
                    s.execute("ROLLBACK")
        for s in self.writers:
            if s.pending is not None:
                with contextlib.suppress(Exception):
                    s.pending.result(timeout=60)
                    s.execute("ROLLBACK")
                s.pending = None
        if self.host.pending is not None:
            with contextlib.suppress(Exception):
                self.host.pending.result(timeout=60)
            self.host.pending = None

    def close(self) -> None:
        self._abandon()
        self.host.shutdown()
        for s in [*self.writers, self.admin]:
            s.close()
        with contextlib.suppress(Exception):
            self.reader.close()
        self.ends.close()
        self._delete_topics()

    def _delete_topics(self) -> None:
        """Best effort, like the other suites' topic fixtures."""
        k = self.host.cfg.kafka
        tenant = self.host.cfg.tenant
        names = [self.host.topic, k.watermark_topic_name(tenant), k.dead_letter_topic_name(tenant)]
        admin = AdminClient(k.client_options())
        with contextlib.suppress(Exception):
            for future in admin.delete_topics(names, operation_timeout=15).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=15)
