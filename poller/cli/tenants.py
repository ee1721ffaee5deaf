"""`poller tenants put|rm|list`: the tenants topic, which the workers run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from poller.errors import EXIT_CONFIG, ConfigError
from poller.fleet.settings import WorkerConfig, load_worker_config, parse_tenant_text


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("tenants", help="add, change, remove or list the fleet's tenants")
    tsub = t.add_subparsers(dest="tenants_cmd", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--kafka", default=None, help="bootstrap servers")
        p.add_argument("--worker-config", default=None, help="the workers' YAML instead")
        p.add_argument("--topic-prefix", default=None, help="kafka.topic_prefix of the workers")

    put = tsub.add_parser("put", help="add a tenant, or change its configuration (restarts it)")
    put.add_argument("--config", required=True, help="the tenant's configuration (as for run)")
    common(put)
    restart = tsub.add_parser(
        "restart",
        help="start a FAILED tenant again with its stored configuration (puts it again)",
    )
    restart.add_argument("tenant", help="the tenant id to restart")
    common(restart)
    rm = tsub.add_parser("rm", help="remove a tenant: its worker stops it")
    rm.add_argument("tenant", help="the tenant id to remove (its poller stops)")
    common(rm)
    ls = tsub.add_parser(
        "list", help="every tenant, the worker that owns it now, its state and last error"
    )
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    ls.add_argument("--group", default=None, help="the workers' consumer group (who owns what)")
    common(ls)
    t.set_defaults(func=cmd_tenants)


def _worker_config(args: argparse.Namespace) -> WorkerConfig:
    if args.kafka is None and args.worker_config is None:
        raise ConfigError(["give --kafka BOOTSTRAP or --worker-config FILE"], "command line")
    return load_worker_config(
        args.worker_config,
        {
            "kafka.bootstrap_servers": args.kafka,
            "kafka.topic_prefix": args.topic_prefix,
            "group": getattr(args, "group", None),
        },
    )


def cmd_tenants(args: argparse.Namespace) -> int:
    from poller.fleet import tenants

    cfg = _worker_config(args)
    if args.tenants_cmd == "put":
        path = Path(args.config)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"cannot read {path}: {exc.strerror}"], str(path)) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError([f"not UTF-8 text (offset {exc.start})"], str(path)) from None
        raw, tenant = parse_tenant_text(text, str(path), strict=True)
        if (scope := cfg.tenant_secrets) is not None:
            from poller.fleet.scoping import foreign_references

            if foreign := foreign_references(raw, tenant, scope.file_dir, scope.allow_env):
                raise ConfigError(foreign, str(path))
        partition = tenants.put(cfg, tenant, text)
        print(f"put tenant {tenant} (partition {partition} of {cfg.tenants_topic_name()})")
        return 0
    if args.tenants_cmd == "restart":
        known = tenants.read_tenants(cfg)
        if args.tenant not in known:
            print(f"poller: no tenant {args.tenant!r} in {cfg.tenants_topic_name()}")
            return 1
        tenants.put(cfg, args.tenant, known[args.tenant].text)
        print(f"restarting tenant {args.tenant} (its configuration put again)")
        return 0
    if args.tenants_cmd == "rm":
        known = tenants.read_tenants(cfg)
        if args.tenant not in known:
            print(f"poller: no tenant {args.tenant!r} in {cfg.tenants_topic_name()}")
            return EXIT_CONFIG
        tenants.remove(cfg, args.tenant)
        print(f"removed tenant {args.tenant}")
        return 0
    from poller.fleet.status import read_status

    records = tenants.read_tenants(cfg)
    owners = tenants.owners(cfg)
    states = read_status(cfg)
    rows = []
    for name in sorted(records):
        rec = records[name]
        owner = owners.get(rec.partition)
        st = states.get(name)
        rows.append(
            {
                "tenant": name,
                "partition": rec.partition,
                "worker": owner.worker if owner else None,
                "worker_host": owner.host if owner else None,
                "member_id": owner.member_id if owner else None,
                # as the worker that ran it last wrote it; UNASSIGNED: no worker has it yet
                "state": st.state if st else "UNASSIGNED",
                "state_worker": st.worker if st else None,
                "since": st.at if st else None,
                "exit": st.exit if st else None,
                "error": st.error if st else None,
            }
        )
    if args.json:
        print(json.dumps(rows, ensure_ascii=False))
    else:
        for r in rows:
            line = (
                f"{r['tenant']:<40} partition {r['partition']:<4} {r['worker'] or '(none)':<24} "
                f"{r['state']}"
            )
            if r["state"] in ("FAILED", "RESTARTING"):
                said = " ".join(str(r["error"] or "(no error message)").split())
                line += f": {r['exit']}: {said}"
            print(line)
    return 0
