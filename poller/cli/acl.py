"""`poller acl`: the least-privilege Kafka ACLs of a tenant's configuration, per feature, as
`kafka-acls.sh` commands or JSON; with `--worker-config`, also the fleet worker's and the
operator's sets. The configuration's `${...}` references are not resolved (no secret needed)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from poller.config import AppConfig
from poller.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    a = sub.add_parser("acl", help="print the Kafka ACLs a tenant (and the fleet) needs")
    a.add_argument("--config", default=None, help="the tenant's configuration file")
    a.add_argument(
        "--tenant", default=None, help="the tenant: checked against --config, or read from the "
        "tenants topic with --worker-config"
    )  # fmt: skip
    a.add_argument("--worker-config", default=None, help="the workers' YAML (fleet sets)")
    a.add_argument("--principal", default=None, help="default: User:<kafka sasl.username>")
    a.add_argument(
        "--feature",
        action="append",
        default=None,
        help="run, backfill, repair, tail, verify, create_topics (repeatable; default: all)",
    )
    a.add_argument("--json", action="store_true", help="a JSON array instead of commands")
    a.set_defaults(func=cmd_acl)


def _tenant_config(text: str, source: str) -> AppConfig:
    from poller.config import parse_config
    from poller.fleet.settings import _placeholders
    from poller.yamlfile import parse_yaml

    raw, problems = parse_yaml(text)
    if problems:
        raise ConfigError(problems, source)
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): expected a mapping"], source)
    return parse_config(_placeholders(raw), source, check_files=False)


def cmd_acl(args: argparse.Namespace) -> int:
    from poller.kafka import acls

    features = tuple(args.feature or acls.FEATURES)
    unknown = [f for f in features if f not in acls.FEATURES]
    if unknown:
        raise ConfigError([f"--feature {f}: one of {', '.join(acls.FEATURES)}" for f in unknown])
    worker = None
    if args.worker_config is not None:
        from poller.fleet.settings import load_worker_config

        worker = load_worker_config(args.worker_config, {})
    cfg: AppConfig | None = None
    if args.config is not None:
        path = Path(args.config)
        try:
            cfg = _tenant_config(path.read_text(encoding="utf-8"), str(path))
        except OSError as exc:
            raise ConfigError([f"cannot read {path}: {exc.strerror}"], str(path)) from None
        if args.tenant is not None and args.tenant != cfg.tenant:
            raise ConfigError([f"--tenant {args.tenant!r}: the file is tenant {cfg.tenant!r}"])
    elif args.tenant is not None and worker is not None:
        from poller.fleet.tenants import read_tenants

        records = read_tenants(worker)
        if args.tenant not in records:
            raise ConfigError([f"--tenant {args.tenant!r}: not in {worker.tenants_topic_name()}"])
        cfg = _tenant_config(records[args.tenant].text, f"tenant {args.tenant}")
    elif worker is None:
        raise ConfigError(["give --config FILE, or --tenant T with --worker-config FILE"])

    sets: list[tuple[str, list[acls.AclEntry], str, str]] = []
    if cfg is not None:
        principal = args.principal or acls.principal_of(dict(cfg.kafka.options)) or "User:TENANT"
        entries = acls.tenant_acls(cfg, features)
        sets.append((f"tenant {cfg.tenant}", entries, principal, cfg.kafka.bootstrap_servers))
    if worker is not None:
        topic = worker.tenants_topic_name()
        wp = acls.principal_of(dict(worker.kafka.options)) or "User:WORKER"
        boot = worker.kafka.bootstrap_servers
        status = worker.status_topic_name()
        if cfg is not None:
            # A tenant principal must get nothing on the fleet's own topics (every tenant's
            # configuration, every tenant's state); a template naming one would grant it.
            clash = sorted(
                {e.resource_name for e in sets[0][1] if e.resource_name in (topic, status)}
            )
            if clash:
                raise ConfigError(
                    [f"tenant {cfg.tenant}: its topic {t!r} is the fleet's own (a tenant's "
                     "principal must get no access to it); change kafka.topic_template or "
                     "the tenant id" for t in clash]
                )  # fmt: skip
        sets.append(("fleet worker", acls.worker_acls(topic, worker.group, status), wp, boot))
        sets.append(("operator", acls.operator_acls(topic, status), "User:OPERATOR", boot))
    if args.json:
        rows = [
            {**asdict(a), "principal": p, "permission": "ALLOW", "set": name}
            for name, entries, p, _ in sets
            for a in entries
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for name, entries, p, boot in sets:
        print(f"# ---- {name} ({p})")
        for line in acls.as_commands(entries, p, boot):
            print(line)
    if cfg is not None and cfg.kafka.layout != "per_tenant":
        for line in migration(cfg, args.config or "tenant.yaml"):
            print(line)
    return 0


def migration(cfg: AppConfig, path: str) -> list[str]:
    """What moves when this tenant goes from the shared layout to kafka.layout: per_tenant."""
    from poller.config import KafkaConfig

    new = KafkaConfig.model_validate(
        {**cfg.kafka.model_dump(exclude_unset=True), "layout": "per_tenant",
         "topic_template": "{prefix}.{tenant}.{entity}",
         "watermark_topic": "{prefix}.{tenant}.watermarks",
         "dead_letter_topic": "{prefix}.{tenant}.dead_letter"}
    )  # fmt: skip
    old, t = cfg.kafka, cfg.tenant
    moves = [(old.topic_for(e, t), new.topic_for(e, t)) for e in cfg.enabled_entities()]
    moves.append((old.watermark_topic_name(t), new.watermark_topic_name(t)))
    moves.append((old.dead_letter_topic_name(t), new.dead_letter_topic_name(t)))
    lines = [
        "# ---- layout: shared (one trusted operator only). To isolate this tenant, set",
        "# kafka.layout: per_tenant; its topics move (docs/security.md, Migration):",
        *(f"#   {a}  ->  {b}" for a, b in moves if a != b),
        "# then carry each entity's position over (stop the tenant first):",
        f"#   poller offsets show --config {path} --json",
    ]
    lines += [
        f"#   poller offsets reset --config <per-tenant.yaml> --entity {e} --to <cursor>"
        for e in cfg.enabled_entities()
    ]
    return lines
