"""Issue 17: two tenants on the secured broker (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer,
no ACL = no access), each with exactly the ACLs `poller acl` prints for it. Tenant B, with its
own valid credentials, attacks tenant A's topics, watermarks, transactional id and groups;
every attempt must fail and leave A's stream and watermarks as they were. Then every ACL of
A's `run` set is removed in turn: the poller must stop with exit 5 naming it, not retry."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from tests.integration.secure.broker import BOOTSTRAP, Acl, SecureKafka, secure_kafka_session
from tests.integration.secure.tenants import Tenant, make_tenant

RUN_TIMEOUT = 90  # seconds for one `poller run --once`: a retry loop would exceed it

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sk() -> Iterator[SecureKafka]:
    yield from secure_kafka_session()


@pytest.fixture(scope="module")
def tenants(sk: SecureKafka, tmp_path_factory: pytest.TempPathFactory) -> tuple[Tenant, Tenant]:
    """A and B, each granted exactly its own `poller acl` set and run once (5 rows each)."""
    tmp = tmp_path_factory.mktemp("iso")
    pair = []
    for label in ("a", "b"):
        t = make_tenant(sk, tmp, label)
        sk.grant(t.acls("run", "create_topics", "tail"))
        t.add_rows(1, 5)
        out = t.poller("run", "--once", "--config", str(t.config), timeout=RUN_TIMEOUT)
        assert out.returncode == 0, out.stderr[-3000:]
        pair.append(t)
    return pair[0], pair[1]


def _ends(sk: SecureKafka, topic: str) -> list[int]:
    c = Consumer(
        {"bootstrap.servers": BOOTSTRAP, **sk.options("admin", "poller-secure-admin"),
         "group.id": f"iso-admin-{uuid.uuid4().hex}", "isolation.level": "read_uncommitted"}
    )  # fmt: skip
    try:
        meta = c.list_topics(topic, timeout=20).topics[topic]
        return [
            c.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1]
            for p in sorted(meta.partitions)
        ]
    finally:
        c.close()


def _options(t: Tenant) -> dict[str, Any]:
    return {
        "bootstrap.servers": BOOTSTRAP,
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": t.user,
        "sasl.password": t.password,
        "ssl.ca.location": str(Path.home() / ".cache/poller-stack/kafka-secure/ca.pem"),
    }


def _produce_error(conf: dict[str, Any], topic: str, key: bytes) -> KafkaError | None:
    """Produce one record as `conf`'s principal; the delivery error (None: it was written)."""
    result: list[KafkaError | None] = []
    p = Producer({**conf, "message.timeout.ms": 10000, "enable.idempotence": False})
    p.produce(topic, b"forged", key, on_delivery=lambda err, _msg: result.append(err))
    p.flush(20)
    assert result, "no delivery report within 20 s"
    return result[0]


def test_the_printed_acl_set_is_enough(tenants: tuple[Tenant, Tenant]) -> None:
    a, _b = tenants
    check = a.poller("check", "--config", str(a.config), timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    tail = a.poller("tail", "--config", str(a.config), "--entity", "customers", timeout=60)
    assert tail.returncode == 0, tail.stderr
    assert len(tail.stdout.splitlines()) == 5


def test_tenant_b_cannot_read_write_fence_or_join_tenant_a(
    sk: SecureKafka, tenants: tuple[Tenant, Tenant]
) -> None:
    a, b = tenants
    before = {t: _ends(sk, t) for t in (a.topic, a.watermark_topic)}
    as_b = _options(b)

    # write rows keyed as A into A's topic, and a watermark for A far ahead
    key_as_a = f'["{a.name}", 1]'.encode()
    err = _produce_error(as_b, a.topic, key_as_a)
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    err = _produce_error(as_b, a.watermark_topic, f'["{a.name}", "customers"]'.encode())
    assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

    # read A's topic: no record comes, and the metadata says why
    c = Consumer({**as_b, "group.id": f"poller-tail-{b.name}"})
    try:
        meta = c.list_topics(a.topic, timeout=20).topics[a.topic]
        assert meta.error is not None
        assert meta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, meta.error
        c.assign([TopicPartition(a.topic, 0, 0)])
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            assert msg is None or msg.error() is not None, "B read a record of A's topic"
    finally:
        c.close()

    # take A's transactional id: would fence A's poller and abort its transaction
    p = Producer({**as_b, "transactional.id": a.transactional_id})
    with pytest.raises(KafkaException) as fenced:
        p.init_transactions(20)
    assert fenced.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    # join A's watermark group (on a topic B may read)
    c = Consumer({**as_b, "group.id": f"poller-watermarks-{a.name}"})
    try:
        c.subscribe([b.watermark_topic])
        errors: list[KafkaError] = []
        deadline = time.monotonic() + 20
        while not errors and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is not None:
                errors.append(msg.error())
        assert errors and errors[0].code() == KafkaError.GROUP_AUTHORIZATION_FAILED, errors
    finally:
        c.close()

    # B's own poller pointed at A's topic prefix: refused by the broker, exit 5, named
    raw = yaml.safe_load(b.config.read_text(encoding="utf-8"))
    raw["kafka"].update(
        layout="shared",
        topic_template=a.prefix + ".{entity}",
        watermark_topic=a.watermark_topic,
        dead_letter_topic=a.prefix + ".dead_letter",
    )
    forged = b.dir / "forged.yaml"
    forged.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = b.poller("run", "--once", "--config", str(forged), timeout=RUN_TIMEOUT)
    assert out.returncode == 5, out.stderr[-3000:]
    assert a.topic in out.stderr and "WRITE" in out.stderr
    out = b.poller("tail", "--config", str(forged), "--entity", "customers", timeout=60)
    assert out.returncode == 5 and not out.stdout, out.stdout + out.stderr[-3000:]
    assert a.topic in out.stderr and "READ" in out.stderr

    # A's stream and watermarks are as they were, and A goes on from where it was
    assert {t: _ends(sk, t) for t in before} == before
    a.add_rows(6, 2)
    out = a.poller("run", "--once", "--config", str(a.config), timeout=RUN_TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    tail = a.poller("tail", "--config", str(a.config), "--entity", "customers", timeout=60)
    assert len(tail.stdout.splitlines()) == 7, tail.stdout


def test_each_missing_acl_stops_the_poller_with_exit_5_naming_it(
    sk: SecureKafka, tenants: tuple[Tenant, Tenant]
) -> None:
    a, _b = tenants
    needed = a.acls("run")
    for acl in needed:
        sk.revoke([acl])  # returns once the broker's authorizer has applied it
        try:
            started = time.monotonic()
            out = a.poller("run", "--once", "--config", str(a.config), timeout=RUN_TIMEOUT)
            took = time.monotonic() - started
        finally:
            sk.grant([acl])
        text = out.stdout + out.stderr
        assert out.returncode == 5, f"without {acl}: exit {out.returncode}\n{text[-3000:]}"
        assert acl.name in text, f"without {acl}: not named\n{text[-3000:]}"
        if acl.resource_type in ("TOPIC", "GROUP"):
            assert acl.operation in text, f"without {acl}: operation not named\n{text[-3000:]}"
        assert took < 60, f"without {acl}: {took:.0f}s (a retry loop?)"
    out = a.poller("run", "--once", "--config", str(a.config), timeout=RUN_TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]


def test_wrong_password_and_untrusted_ca_name_their_cause(tenants: tuple[Tenant, Tenant]) -> None:
    a, _b = tenants
    wrong_pw = a.dir / "wrong.password"
    wrong_pw.write_text("not-the-password", encoding="utf-8")
    text = a.config.read_text(encoding="utf-8")
    bad_pw = a.dir / "bad-password.yaml"
    bad_pw.write_text(text.replace(str(a.dir / "kafka.password"), str(wrong_pw)), "utf-8")
    bad_ca = a.dir / "bad-ca.yaml"
    bad_ca.write_text(
        text.replace(
            str(Path.home() / ".cache/poller-stack/kafka-secure/ca.pem"),
            "/etc/ssl/certs/ca-certificates.crt",
        ),
        "utf-8",
    )
    cases = (
        (bad_pw, "SASL authentication", ("check", "run", "status")),
        (bad_ca, "certificate verify failed", ("check",)),
    )
    for path, cause, commands in cases:
        for cmd in commands:
            extra = ["--once"] if cmd == "run" else []
            out = a.poller(cmd, *extra, "--config", str(path), timeout=RUN_TIMEOUT)
            both = out.stdout + out.stderr
            assert out.returncode == 5, f"{cmd} {path.name}: exit {out.returncode}\n{both[-3000:]}"
            assert cause in both and "not reachable" not in both, both[-3000:]
            assert a.password not in both


def test_no_schema_is_registered_before_kafka_accepts_the_tenant(
    sk: SecureKafka, tmp_path: Path
) -> None:
    """Issue 17: schemas were registered before any Kafka permission check."""
    import urllib.request

    from tests.integration.conftest import REGISTRY_URL

    t = make_tenant(sk, tmp_path, "reg")
    raw = yaml.safe_load(t.config.read_text(encoding="utf-8"))
    raw["kafka"]["format"] = "confluent"
    raw["schema_registry"] = {"url": REGISTRY_URL}
    t.config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    granted = t.acls("run", "create_topics")
    sk.grant(a for a in granted if a.resource_type != "TRANSACTIONAL_ID")
    t.add_rows(1, 2)
    out = t.poller("run", "--once", "--config", str(t.config), timeout=RUN_TIMEOUT)
    assert out.returncode == 5, out.stderr[-3000:]
    assert t.transactional_id in out.stderr
    with urllib.request.urlopen(f"{REGISTRY_URL}/subjects", timeout=10) as resp:
        subjects = json.loads(resp.read())
    assert not [s for s in subjects if s.startswith(t.prefix)], subjects


def _fleet_topics(sk: SecureKafka, tmp: Path) -> tuple[Path, str, str]:
    """An operator-run fleet's tenants and status topics on the secured broker (made by the
    admin, as the operator would), and the worker configuration that names them."""
    from confluent_kafka.admin import NewTopic

    prefix = f"isofleet_{uuid.uuid4().hex[:8]}"
    sk.topic_prefixes.append(f"{prefix}.")
    tenants, status = f"{prefix}.tenants", f"{prefix}.tenant_status"
    futures = sk.admin.create_topics(
        [NewTopic(t, 1, 1, config={"cleanup.policy": "compact"}) for t in (tenants, status)]
    )
    for f in futures.values():
        f.result(timeout=30)
    worker = tmp / "worker.yaml"
    worker.write_text(
        yaml.safe_dump({"kafka": {"bootstrap_servers": BOOTSTRAP, "topic_prefix": prefix,
                                  "options": {"sasl.username": "worker"}},
                        "metrics": {"enabled": False}}),
        encoding="utf-8",
    )  # fmt: skip
    return worker, tenants, status


def _records(sk: SecureKafka, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every record of the topic's partition 0, read as the admin."""
    c = Consumer(
        {"bootstrap.servers": BOOTSTRAP, **sk.options("admin", "poller-secure-admin"),
         "group.id": f"iso-admin-{uuid.uuid4().hex}", "enable.partition.eof": True}
    )  # fmt: skip
    out: list[tuple[bytes | None, bytes | None]] = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    return out
                raise KafkaException(msg.error())
            out.append((msg.key(), msg.value()))
        pytest.fail(f"{topic}: no end of partition within 20 s")
    finally:
        c.close()


def test_tenant_b_cannot_read_or_rewrite_the_fleets_tenants_and_status_topics(
    sk: SecureKafka, tenants: tuple[Tenant, Tenant], tmp_path: Path
) -> None:
    """The tenants topic holds every tenant's configuration (hosts, users, secret references)
    and the status topic every tenant's state: a tenant principal gets nothing on either."""
    a, b = tenants
    worker, tenants_topic, status_topic = _fleet_topics(sk, tmp_path)
    admin = {"bootstrap.servers": BOOTSTRAP, **sk.options("admin", "poller-secure-admin")}
    p = Producer(admin)
    p.produce(tenants_topic, a.config.read_bytes(), a.name.encode())
    p.produce(status_topic, b'{"state": "running"}', a.name.encode())
    assert p.flush(20) == 0

    # What `poller acl` grants B, next to the fleet's sets: nothing on the fleet's topics.
    out = b.poller("acl", "--config", str(b.config), "--worker-config", str(worker), "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    mine = [r for r in rows if r["set"] == f"tenant {b.name}"]
    assert mine and not [r for r in mine if r["resource_name"] in (tenants_topic, status_topic)], (
        mine
    )
    assert {(r["resource_name"], r["operation"]) for r in rows if r["set"] == "fleet worker"} >= {
        (tenants_topic, "READ"),
        (status_topic, "WRITE"),
    }
    sk.grant(Acl.from_json(r, r["principal"]) for r in mine)
    before = {t: _records(sk, t) for t in (tenants_topic, status_topic)}
    as_b = _options(b)

    for topic in (tenants_topic, status_topic):
        c = Consumer({**as_b, "group.id": f"poller-tail-{b.name}"})
        try:
            meta = c.list_topics(topic, timeout=20).topics[topic]
            assert meta.error is not None, f"B may describe {topic}"
            assert meta.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, meta.error
            c.assign([TopicPartition(topic, 0, 0)])
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                msg = c.poll(0.5)
                assert msg is None or msg.error() is not None, f"B read a record of {topic}"
        finally:
            c.close()
        # rewriting A's configuration (or its state) under A's key: refused
        err = _produce_error(as_b, topic, a.name.encode())
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    # B's own tools pointed at the fleet's topics: `poller acl --tenant` reads the tenants topic
    b_worker = tmp_path / "b-worker.yaml"
    raw = yaml.safe_load(worker.read_text(encoding="utf-8"))
    raw["kafka"]["options"] = yaml.safe_load(b.config.read_text(encoding="utf-8"))["kafka"][
        "options"
    ]
    b_worker.write_text(yaml.safe_dump(raw), encoding="utf-8")
    out = b.poller("acl", "--tenant", a.name, "--worker-config", str(b_worker), timeout=60)
    assert out.returncode == 5, out.stdout + out.stderr[-3000:]
    assert f"Kafka denied READ on TOPIC {tenants_topic!r}" in out.stderr, out.stderr[-3000:]
    assert a.name not in out.stdout and "does not exist" not in out.stderr
    assert {t: _records(sk, t) for t in before} == before
