"""The secured broker `scripts/services up kafka-secure` starts (SASL_SSL + SCRAM-SHA-512 +
StandardAuthorizer, allow.everyone.if.no.acl.found=false) and what the tests do with it as its
super user: make SCRAM users, grant and revoke ACLs, read topics."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialDeletion,
    UserScramCredentialUpsertion,
)

STACK_HOME = Path(
    os.environ.get("POLLER_STACK_HOME", Path.home() / ".cache" / "poller-stack")
).expanduser()
SECURE_HOME = STACK_HOME / "kafka-secure"
BOOTSTRAP = "127.0.0.1:9190"
ADMIN_USER, ADMIN_PASSWORD = "admin", "poller-secure-admin"
CA = SECURE_HOME / "ca.pem"
HOW_TO_START = "start it with `scripts/services up kafka-secure` (part of `scripts/services up`)"


def client_options(user: str, password: str, ca: Path = CA) -> dict[str, str]:
    """librdkafka settings for `user` on the secured listener."""
    return {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "ssl.ca.location": str(ca),
    }


@dataclass(frozen=True)
class Acl:
    """One ACL as `poller acl --json` prints it."""

    resource_type: str  # TOPIC, GROUP, TRANSACTIONAL_ID, CLUSTER
    name: str
    pattern: str  # LITERAL, PREFIXED
    operation: str  # WRITE, READ, DESCRIBE, ...
    principal: str = ""

    @classmethod
    def from_json(cls, d: dict[str, Any], principal: str) -> Acl:
        return cls(
            d["resource_type"], d["resource_name"], d["pattern_type"], d["operation"], principal
        )

    def _spec(self) -> tuple[Any, ...]:
        return (
            ResourceType[self.resource_type],
            self.name,
            ResourcePatternType[self.pattern],
            self.principal,
            "*",
            AclOperation[self.operation],
            AclPermissionType.ALLOW,
        )

    def binding(self) -> AclBinding:
        return AclBinding(*self._spec())

    def filter(self) -> AclBindingFilter:
        """Matches exactly this ACL."""
        return AclBindingFilter(*self._spec())


@dataclass
class SecureKafka:
    """Admin access to the secured broker; every user and ACL made is removed at teardown."""

    admin: AdminClient
    users: list[str] = field(default_factory=list)
    acls: list[Acl] = field(default_factory=list)
    topic_prefixes: list[str] = field(default_factory=list)  # topics deleted at teardown

    def user(self, prefix: str) -> tuple[str, str]:
        """A new SCRAM-SHA-512 user (name, password) with no ACL."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        password = uuid.uuid4().hex
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        for fut in self.admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(name, info, password.encode())]
        ).values():
            fut.result(timeout=30)
        self.users.append(name)
        return name, password

    def grant(self, acls: Iterable[Acl]) -> None:
        todo = list(dict.fromkeys(acls))  # features share some ACLs
        if not todo:
            return
        for fut in self.admin.create_acls([a.binding() for a in todo], request_timeout=30).values():
            fut.result(timeout=30)
        self.acls.extend(todo)
        self._applied(todo, present=True)

    def revoke(self, acls: Iterable[Acl]) -> None:
        acls = list(dict.fromkeys(acls))
        if acls:
            filters = [a.filter() for a in acls]
            for fut in self.admin.delete_acls(filters, request_timeout=30).values():
                fut.result(timeout=30)
            self._applied(acls, present=False)

    def _applied(self, acls: list[Acl], present: bool) -> None:
        """Waits until the broker's authorizer shows the change. The controller answers once
        the ACL record is committed; the broker applies it a moment later, and DescribeAcls is
        answered from that same authorizer state (a fixed sleep was a guess)."""
        deadline = time.monotonic() + 30
        for a in acls:
            while (
                bool(self.admin.describe_acls(a.filter(), request_timeout=30).result(30)) != present
            ):
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{a} still {'absent' if present else 'present'} after 30 s"
                    )
                time.sleep(0.02)

    def options(self, user: str, password: str) -> dict[str, str]:
        return client_options(user, password)

    def cleanup(self) -> None:
        try:
            self.revoke(self.acls)
            doomed = [
                t
                for t in self.admin.list_topics(timeout=30).topics
                if t.startswith(tuple(self.topic_prefixes))
            ]
            if self.topic_prefixes and doomed:
                for fut in self.admin.delete_topics(doomed, request_timeout=30).values():
                    fut.result(timeout=30)
            if self.users:
                for fut in self.admin.alter_user_scram_credentials(
                    [
                        UserScramCredentialDeletion(u, ScramMechanism.SCRAM_SHA_512)
                        for u in self.users
                    ]
                ).values():
                    fut.result(timeout=30)
        except KafkaException as exc:  # the broker was reset meanwhile: nothing left to remove
            logging.getLogger(__name__).warning("secure broker cleanup: %s", exc)


def admin_client() -> AdminClient:
    if not CA.exists():
        pytest.fail(f"no secured broker CA at {CA}; {HOW_TO_START}", pytrace=False)
    admin = AdminClient(
        {"bootstrap.servers": BOOTSTRAP, **client_options(ADMIN_USER, ADMIN_PASSWORD)},
        logger=logging.getLogger("secure-kafka-admin"),
    )
    try:
        admin.list_topics(timeout=20)
    except KafkaException as exc:
        pytest.fail(
            f"the secured broker {BOOTSTRAP} did not answer ({exc}); {HOW_TO_START}", pytrace=False
        )
    return admin


def secure_kafka_session() -> Iterator[SecureKafka]:
    sk = SecureKafka(admin_client())
    try:
        yield sk
    finally:
        sk.cleanup()
