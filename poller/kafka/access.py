"""Kafka authentication and authorization, checked before anything is written and named when
the broker refuses: a missing ACL or a failed SASL/TLS handshake is terminal (exit 5), never
"not reachable" and never retried.

librdkafka reports a failed SASL authentication (_AUTHENTICATION) or TLS verification (_SSL)
only through the client's error callback, while the call itself fails with a bare _TRANSPORT;
`ConnectWatch` keeps the first such cause so the caller can name it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from poller.config import AppConfig, KafkaConfig
from poller.errors import (
    BrokerUnavailableError,
    KafkaAuthenticationError,
    KafkaAuthorizationError,
)
from poller.kafka.acls import AclEntry, principal_of, tenant_acls
from poller.kafka.clients import create
from poller.kafka.topics import KAFKA_LOGGER

log = logging.getLogger(__name__)

_CAUSE_CODES = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}
)
AUTHORIZATION_CODES = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    }
)


class ConnectWatch:
    """An error_cb that remembers the first authentication or TLS failure."""

    def __init__(self) -> None:
        self.cause: KafkaError | None = None

    def __call__(self, err: KafkaError) -> None:
        if self.cause is None and err.code() in _CAUSE_CODES:
            self.cause = err


def principal(kafka: KafkaConfig) -> str:
    return principal_of(dict(kafka.options)) or "this client's principal"


def authentication_error(kafka: KafkaConfig, err: KafkaError) -> KafkaAuthenticationError:
    if err.code() == KafkaError._SSL:
        hint = "check kafka.options ssl.ca.location (the CA that signed the broker's certificate)"
    else:
        hint = "check kafka.options sasl.username / sasl.password / sasl.mechanism"
    return KafkaAuthenticationError(
        f"Kafka {kafka.bootstrap_servers} refused the connection as {principal(kafka)}: "
        f"{err.str()} ({err.name()}); {hint}"
    )


def denied(kafka: KafkaConfig, acl: AclEntry, detail: str = "") -> KafkaAuthorizationError:
    return KafkaAuthorizationError(
        f"Kafka denied {acl.describe(principal(kafka))}"
        + (f": {detail}" if detail else "")
        + ". Grant it (see `poller acl --config ...`)."
    )


def watched_admin(kafka: KafkaConfig) -> tuple[AdminClient, ConnectWatch]:
    watch = ConnectWatch()
    admin = create(
        AdminClient, {**kafka.client_options(), "error_cb": watch, "logger": KAFKA_LOGGER}
    )
    return admin, watch


def reach(kafka: KafkaConfig, timeout_s: float) -> str | None:
    """None when the cluster answers; else why not. A refused login or an unverifiable
    certificate raises KafkaAuthenticationError: waiting longer cannot help."""
    admin, watch = watched_admin(kafka)
    try:
        admin.list_topics(timeout=max(timeout_s, 1))
    except KafkaException as exc:
        admin.poll(0)  # runs the error callbacks queued meanwhile
        if watch.cause is not None:
            raise authentication_error(kafka, watch.cause) from None
        return f"kafka {kafka.bootstrap_servers}: not reachable ({exc.args[0].str()})"
    return None


def _granted(ops: Any, wanted: str) -> bool:
    if ops is None:  # a broker that does not report them: the runtime paths still name a denial
        return True
    names = {op.name for op in ops}
    return wanted in names or "ALL" in names


def access_problems(cfg: AppConfig, timeout_s: float = 10.0) -> list[str]:
    """The ACLs `poller run` needs that the broker shows missing, each named. Topics are
    checked with their authorized operations (or, missing, with a validate-only create);
    the watermark reader's group with a describe. The transactional id cannot be checked
    without fencing a running poller: `run` checks it first thing (init_transactions)."""
    k = cfg.kafka
    admin, watch = watched_admin(k)
    needed = [a for a in tenant_acls(cfg, ("run",)) if a.resource_type == "TOPIC"]
    topics = sorted({a.resource_name for a in needed})
    problems: list[str] = []
    missing_topics: list[str] = []
    try:
        futures = admin.describe_topics(
            TopicCollection(topics), request_timeout=timeout_s, include_authorized_operations=True
        )
        for topic, fut in futures.items():
            want = [a for a in needed if a.resource_name == topic]
            try:
                ops = fut.result().authorized_operations
            except KafkaException as exc:
                code = exc.args[0].code()
                if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    missing_topics.append(topic)
                    continue
                if code != KafkaError.TOPIC_AUTHORIZATION_FAILED:
                    raise  # transient below: the run loop checks again
                ops = []
            problems += [
                f"missing ACL: {a.describe(principal(k))}"
                for a in want
                if not _granted(ops, a.operation)
            ]
        if missing_topics:
            problems += _create_problems(cfg, admin, missing_topics, timeout_s)
        group = next(a for a in tenant_acls(cfg, ("run",)) if a.resource_type == "GROUP")
        if not _group_allowed(admin, group.resource_name, timeout_s):
            problems.append(f"missing ACL: {group.describe(principal(k))}")
    except KafkaException as exc:
        admin.poll(0)
        if watch.cause is not None:
            raise authentication_error(k, watch.cause) from None
        raise BrokerUnavailableError(f"checking the ACLs on {k.bootstrap_servers}: {exc}") from exc
    return problems


def _group_allowed(admin: AdminClient, group: str, timeout_s: float) -> bool:
    """False only when the broker refuses to describe the group. A coordinator still loading
    (a fresh broker) is asked again until the timeout, then the check is left to the reader,
    which names a denial itself."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result()
            return True
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                return False
            if time.monotonic() > deadline:
                log.warning("could not check the ACL of group %s: %s", group, err.str())
                return True
            time.sleep(0.5)


def _create_problems(
    cfg: AppConfig, admin: AdminClient, topics: list[str], timeout_s: float
) -> list[str]:
    """Topics that do not exist yet: may this principal create them?"""
    k = cfg.kafka
    specs = [NewTopic(t, num_partitions=1, replication_factor=k.topic_replication) for t in topics]
    problems = []
    for topic, fut in admin.create_topics(
        specs, request_timeout=timeout_s, validate_only=True
    ).items():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() not in AUTHORIZATION_CODES:
                continue  # e.g. the replication factor: ensure_topics names that itself
            acl = AclEntry("create_topics", "TOPIC", topic, "LITERAL", "CREATE")
            problems.append(
                f"missing ACL: {acl.describe(principal(k))} (the topic does not exist; "
                "create it beforehand or grant CREATE)"
            )
    return problems
