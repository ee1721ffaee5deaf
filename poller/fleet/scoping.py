"""Issue 17: a fleet tenant may reference only its own secrets. With the worker's
`tenant_secrets` set, a tenant's `${file:...}` must lie under its own directory
(`file_dir` with `{tenant}`), an environment reference must be one the operator allows, and
its child process gets a filtered environment instead of the worker's whole one (which holds
the worker's own credentials and, in a shared Secret, other tenants')."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

_REFERENCE = re.compile(r"\$\{([^}]*)\}")

# What a child needs to run at all; everything else of the worker's environment is dropped.
_CHILD_ENV_KEEP = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH",
                   "VIRTUAL_ENV", "HOSTNAME", "POD_NAME", "POD_NAMESPACE")  # fmt: skip


def tenant_dir(file_dir: str, tenant: str) -> PurePosixPath | None:
    """The tenant's secrets directory, or None when the tenant id cannot be one path
    component (a '/' or '..' would reach another tenant's directory)."""
    if "/" in tenant or "\x00" in tenant or tenant in (".", ".."):
        return None
    return PurePosixPath(os.path.normpath(file_dir.format(tenant=tenant)))


def foreign_references(
    raw: Any, tenant: str, file_dir: str, allow_env: list[str] | tuple[str, ...]
) -> list[str]:
    """Every reference of the tenant's raw configuration that is not its own, with its path."""
    base = tenant_dir(file_dir, tenant)
    problems: list[str] = []
    if base is None:
        return [f"tenant {tenant!r}: cannot have a secrets directory (no '/', '.' or '..')"]

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, str):
            for m in _REFERENCE.finditer(node):
                ref = m.group(1)
                if ref.startswith("file:"):
                    target = PurePosixPath(os.path.normpath(ref[5:]))
                    if not target.is_absolute() or not target.is_relative_to(base):
                        problems.append(
                            f"{path}: ${{file:{ref[5:]}}} is outside this tenant's secrets "
                            f"directory {base}"
                        )
                elif ref not in allow_env:
                    problems.append(
                        f"{path}: ${{{ref}}}: a tenant may not read the worker's environment "
                        f"(use ${{file:{base}/...}}, or list it in tenant_secrets.allow_env)"
                    )

    walk(raw, "")
    return problems


def child_environment(
    env: Mapping[str, str], allow_env: list[str] | tuple[str, ...], extra: Mapping[str, str]
) -> dict[str, str]:
    """The worker's environment cut down to what a child needs, the allowed variables and
    `extra` (the worker's own settings for the child)."""
    keep = {k: v for k, v in env.items() if k in _CHILD_ENV_KEEP or k.startswith("LC_")}
    keep.update({k: env[k] for k in allow_env if k in env})
    return {**keep, **extra}
