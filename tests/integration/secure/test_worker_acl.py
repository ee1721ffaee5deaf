"""Issue 17: the fleet worker under its own principal on the secured broker. Without the Read
on its group that `poller acl --worker-config` lists, it stops with exit 5 naming the group
instead of retrying."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from confluent_kafka.admin import NewTopic

from tests.integration.secure.broker import BOOTSTRAP, CA, Acl, SecureKafka
from tests.integration.secure.tenants import POLLER, REPO_ROOT

pytestmark = pytest.mark.integration


def test_a_worker_without_its_group_acl_exits_5_naming_it(
    secure_kafka: SecureKafka, tmp_path: Path
) -> None:
    user, password = secure_kafka.user("worker")
    (tmp_path / "pw").write_text(password, encoding="utf-8")
    prefix = f"isow_{uuid.uuid4().hex[:8]}"
    group = f"{prefix}-workers"
    cfg = {
        "kafka": {
            "bootstrap_servers": BOOTSTRAP,
            "topic_prefix": prefix,
            "options": {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": user,
                "sasl.password": f"${{file:{tmp_path / 'pw'}}}",
                "ssl.ca.location": str(CA),
            },
        },
        "group": group,
        "tenants_partitions": 2,
        "state_dir": str(tmp_path / "state"),
        "metrics": {"enabled": False},
    }
    path = tmp_path / "worker.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    topic = f"{prefix}.tenants"
    secure_kafka.admin.create_topics([NewTopic(topic, 2, 1, config={"cleanup.policy": "compact"})])[
        topic
    ].result(timeout=30)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}

    def poller(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*POLLER, *args], capture_output=True, text=True, env=env,
                              cwd=REPO_ROOT, timeout=timeout, check=False)  # fmt: skip

    try:
        out = poller("acl", "--worker-config", str(path), "--json", timeout=60)
        assert out.returncode == 0, out.stderr
        rows = [r for r in json.loads(out.stdout) if r["set"] == "fleet worker"]
        worker_acls = [Acl.from_json(r, f"User:{user}") for r in rows]
        assert {(a.resource_type, a.name, a.operation) for a in worker_acls} == {
            ("TOPIC", topic, "READ"),
            ("TOPIC", f"{prefix}.tenant_status", "CREATE"),
            ("TOPIC", f"{prefix}.tenant_status", "WRITE"),
            ("GROUP", group, "READ"),
        }
        secure_kafka.grant(a for a in worker_acls if a.resource_type == "TOPIC")
        out = poller("worker", "--config", str(path), timeout=90)
        text = out.stdout + out.stderr
        assert out.returncode == 5, f"exit {out.returncode}:\n{text[-3000:]}"
        assert group in text and "READ" in text, text[-3000:]
        assert password not in text
    finally:
        secure_kafka.admin.delete_topics([topic])
