"""Issue 17: an operator-run fleet on the secured broker with per-tenant principals. The worker
runs under its own principal with exactly its `poller acl --worker-config` set; each tenant's
child runs under the tenant's own SCRAM user (its password a file under the tenant's own secrets
directory, `tenant_secrets`) with exactly the tenant's `poller acl` set, in the per_tenant
layout. Every row reaches its tenant's topic exactly once, also after a kill -9 of a worker
moves its tenants to the other (whose children fence the dead writers with the tenants' own
transactional-id ACLs)."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import NewTopic

from tests.integration.procs import LoggedProcess
from tests.integration.secure.broker import BOOTSTRAP, CA, Acl, SecureKafka
from tests.integration.secure.tenants import POLLER, Tenant, make_tenant

pytestmark = pytest.mark.integration


def _rows(t: Tenant) -> list[str]:
    """The tenant's topic as `poller tail` shows it, read with the tenant's own principal."""
    out = t.poller("tail", "--config", str(t.config), "--entity", "customers",
                   "--from-beginning", timeout=60)  # fmt: skip
    return out.stdout.splitlines() if out.returncode == 0 else []


def _last(w: LoggedProcess) -> str:
    """The worker's last assignment line."""
    lines = [x for x in w.log().splitlines() if "assigned partitions" in x]
    return lines[-1] if lines else ""


def _wait_rows(t: Tenant, n: int, workers: list[LoggedProcess], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (got := len(_rows(t))) < n:
        if not all(w.alive() for w in workers) or time.monotonic() > deadline:
            logs = "\n".join(w.describe(60) for w in workers)
            pytest.fail(f"{t.name}: {got} of {n} rows\n{logs}")
        time.sleep(1)
    assert got == n, f"{t.name}: {got} rows for {n} (a duplicate?)"


def test_a_fleet_runs_each_tenant_under_its_own_principal(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    sk = secure_kafka
    tenants = [make_tenant(sk, tmp_path, label) for label in ("fa", "fb")]
    for t in tenants:
        sk.grant(t.acls("run", "create_topics", "tail"))
        t.add_rows(1, 20)

    prefix = f"isofleet_{uuid.uuid4().hex[:8]}"
    sk.topic_prefixes.append(f"{prefix}.")
    user, password = sk.user("worker")
    (tmp_path / "worker.password").write_text(password, encoding="utf-8")
    options = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": f"${{file:{tmp_path / 'worker.password'}}}",
        "ssl.ca.location": str(CA),
    }
    worker_cfg = {
        "kafka": {"bootstrap_servers": BOOTSTRAP, "topic_prefix": prefix, "options": options},
        "group": f"{prefix}-workers",
        "tenants_partitions": 2,
        "state_dir": str(tmp_path / "state"),
        "metrics": {"enabled": False},
        "session_timeout_s": 6,
        "heartbeat_interval_s": 1,
        "tenant_secrets": {"file_dir": f"{tmp_path}/{{tenant}}"},
        "restart": {"initial_backoff_s": 0.5, "max_backoff_s": 5},
    }
    worker_yaml = tmp_path / "worker.yaml"
    worker_yaml.write_text(yaml.safe_dump(worker_cfg), encoding="utf-8")
    topic = f"{prefix}.tenants"
    sk.admin.create_topics([NewTopic(topic, 2, 1, config={"cleanup.policy": "compact"})])[
        topic
    ].result(timeout=30)
    out = tenants[0].poller("acl", "--worker-config", str(worker_yaml), "--json", timeout=60)
    assert out.returncode == 0, out.stderr
    sk.grant(
        Acl.from_json(r, f"User:{user}")
        for r in json.loads(out.stdout)
        if r["set"] == "fleet worker"
    )
    # The operator puts the tenants (here the admin stands in for the operator's principal).
    operator = {**worker_cfg, "kafka": {**worker_cfg["kafka"], "options": {
        **options, "sasl.username": "admin", "sasl.password": "poller-secure-admin"}}}  # fmt: skip
    operator_yaml = tmp_path / "operator.yaml"
    operator_yaml.write_text(yaml.safe_dump(operator), encoding="utf-8")
    for t in tenants:
        put = t.poller("tenants", "put", "--config", str(t.config),
                       "--worker-config", str(operator_yaml), timeout=60)  # fmt: skip
        assert put.returncode == 0, put.stdout + put.stderr

    workers = [
        LoggedProcess(
            [*POLLER, "worker", "--config", str(worker_yaml)],
            tmp_path / f"worker-{i}.log",
            f"worker-{i}",
        )
        for i in (1, 2)
    ]
    try:
        for t in tenants:
            _wait_rows(t, 20, workers)
        # kill -9 a worker that runs a tenant: the other takes it over, under its principal
        victim = next(w for w in workers if re.search(r"assigned partitions \[\d", _last(w)))
        survivor = next(w for w in workers if w is not victim)
        victim.kill()
        for t in tenants:
            t.add_rows(21, 10)
        for t in tenants:
            _wait_rows(t, 30, [survivor])
        assert survivor.alive(), survivor.describe(80)
        assert survivor.log().count("taken over") >= 2, survivor.describe(80)  # its own + moved
    finally:
        codes = [w.halt(60) for w in workers]
    log = "\n".join(w.log() for w in workers)
    assert "denied" not in log.lower(), log[-5000:]
    assert password not in log and all(t.password not in log for t in tenants)
    assert codes[workers.index(survivor)] == 0, f"worker exit {codes}\n{log[-3000:]}"
