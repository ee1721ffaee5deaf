"""The least-privilege Kafka ACL set of a tenant's configuration, per feature, and of the fleet
worker and the operator: what `poller acl` prints, what `poller check` verifies and what the
secured-broker tests grant.

Topics and groups are named LITERAL. Transactional ids are LITERAL on purpose: a PREFIXED
`poller.acme` would also match tenant `acme.eu`'s `poller.acme.eu` and let one tenant fence the
other. Consumer groups are tenant-scoped literal names (readers assign partitions and never
commit, so one fixed group per tenant and purpose is enough).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, dataclass

from poller.config import AppConfig

FEATURES = ("run", "backfill", "repair", "tail", "verify", "create_topics")


@dataclass(frozen=True, order=True)
class AclEntry:
    feature: str
    resource_type: str  # TOPIC, GROUP, TRANSACTIONAL_ID, CLUSTER
    resource_name: str
    pattern_type: str  # LITERAL, PREFIXED
    operation: str  # WRITE, READ, DESCRIBE, DESCRIBE_CONFIGS, CREATE

    def describe(self, principal: str) -> str:
        return (
            f"{self.operation} on {self.resource_type} {self.resource_name!r} "
            f"({self.pattern_type}) for {principal}"
        )


def watermark_group(tenant: str) -> str:
    return f"poller-watermarks-{tenant}"


def tail_group(tenant: str) -> str:
    return f"poller-tail-{tenant}"


def verify_group(tenant: str) -> str:
    return f"poller-verify-{tenant}"


def _entries(feature: str, rtype: str, name: str, ops: tuple[str, ...]) -> list[AclEntry]:
    return [AclEntry(feature, rtype, name, "LITERAL", op) for op in ops]


def entity_topics(cfg: AppConfig) -> list[str]:
    return [cfg.kafka.topic_for(n, cfg.tenant) for n in cfg.enabled_entities()]


def dead_letter_used(cfg: AppConfig) -> bool:
    return any(e.on_bad_row == "dead_letter" for e in cfg.enabled_entities().values())


def tenant_acls(cfg: AppConfig, features: tuple[str, ...] = FEATURES) -> list[AclEntry]:
    """Every ACL the tenant's principal needs for `features`, without duplicates."""
    k, tid = cfg.kafka, cfg.transactional_id()
    wm = k.watermark_topic_name(cfg.tenant)
    dl = k.dead_letter_topic_name(cfg.tenant) if dead_letter_used(cfg) else None
    topics = entity_topics(cfg)
    # Kafka's authorizer implies DESCRIBE from READ or WRITE (topics, transactional ids, groups):
    # listing it too would make an ACL whose removal changes nothing.
    produce = ("WRITE", "DESCRIBE_CONFIGS")
    out: list[AclEntry] = []

    def watermarks(feature: str) -> None:  # reading the stored positions
        out.extend(_entries(feature, "TOPIC", wm, ("READ",)))
        out.extend(_entries(feature, "GROUP", watermark_group(cfg.tenant), ("DESCRIBE",)))

    def producing(feature: str, txn: str) -> None:
        for t in [*topics, wm, *([dl] if dl else [])]:
            out.extend(_entries(feature, "TOPIC", t, produce))
        out.extend(_entries(feature, "TRANSACTIONAL_ID", txn, ("WRITE",)))
        watermarks(feature)

    if "run" in features:
        producing("run", tid)
    if "backfill" in features:
        producing("backfill", f"{tid}.backfill")
    if "repair" in features:
        producing("repair", f"{tid}.repair")
        producing("repair", f"{tid}.reconcile")
        for t in topics:  # the topic side is read like verify's
            out.extend(_entries("repair", "TOPIC", t, ("READ",)))
        out.extend(_entries("repair", "GROUP", verify_group(cfg.tenant), ("DESCRIBE",)))
    for feature, group in (("tail", tail_group), ("verify", verify_group)):
        if feature in features:
            for t in topics:
                out.extend(_entries(feature, "TOPIC", t, ("READ",)))
            out.extend(_entries(feature, "GROUP", group(cfg.tenant), ("DESCRIBE",)))
            if feature == "verify":
                watermarks(feature)
    if "create_topics" in features:
        for t in [*topics, wm, *([dl] if dl else [])]:
            out.extend(_entries("create_topics", "TOPIC", t, ("CREATE",)))
    return sorted(
        set(out), key=lambda a: (FEATURES.index(a.feature), a.resource_type, a.resource_name)
    )


def worker_acls(tenants_topic: str, group: str, status_topic: str) -> list[AclEntry]:
    """The fleet worker's own principal: read the tenants topic in its consumer group, and
    write each tenant's state to the status topic (created by the first worker)."""
    return [
        *_entries("worker", "TOPIC", tenants_topic, ("READ",)),
        *_entries("worker", "TOPIC", status_topic, ("CREATE", "WRITE")),
        *_entries("worker", "GROUP", group, ("READ",)),
    ]


def operator_acls(tenants_topic: str, status_topic: str) -> list[AclEntry]:
    """The operator's principal for `poller tenants put/remove/list/restart`."""
    return [
        *_entries("operator", "TOPIC", tenants_topic, ("CREATE", "WRITE", "READ")),
        *_entries("operator", "TOPIC", status_topic, ("READ",)),
    ]


def principal_of(cfg_options: dict[str, object]) -> str | None:
    """`User:<sasl.username>` when the configuration names one."""
    user = cfg_options.get("sasl.username")
    return f"User:{user}" if user else None


def as_json(entries: list[AclEntry], principal: str) -> str:
    rows = [{**asdict(a), "principal": principal, "permission": "ALLOW"} for a in entries]
    return json.dumps(rows, indent=2, ensure_ascii=False)


_ACLS_OPTION = {
    "TOPIC": "--topic",
    "GROUP": "--group",
    "TRANSACTIONAL_ID": "--transactional-id",
}
_ACLS_OPERATION = {
    "WRITE": "Write",
    "READ": "Read",
    "DESCRIBE": "Describe",
    "DESCRIBE_CONFIGS": "DescribeConfigs",
    "CREATE": "Create",
}


def as_commands(entries: list[AclEntry], principal: str, bootstrap: str) -> list[str]:
    """One `kafka-acls.sh --add` line per ACL, grouped by feature in comments."""
    lines: list[str] = []
    feature = None
    for a in entries:
        if a.feature != feature:
            feature = a.feature
            lines.append(f"# {feature}")
        lines.append(
            " ".join(
                [
                    "kafka-acls.sh --bootstrap-server",
                    shlex.quote(bootstrap),
                    "--command-config admin.properties --add --allow-principal",
                    shlex.quote(principal),
                    "--operation",
                    _ACLS_OPERATION[a.operation],
                    _ACLS_OPTION[a.resource_type],
                    shlex.quote(a.resource_name),
                    "--resource-pattern-type",
                    a.pattern_type.lower(),
                ]
            )
        )
    return lines
