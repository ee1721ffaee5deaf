"""The configuration reference, generated from the pydantic models that also validate the files
(as Kafka Connect's ConfigDef does): docs/reference/configuration.md and the JSON Schemas
editors use to complete and check poller.yaml and worker.yaml; also the exit-code table of
docs/operations.md (from poller/errors.py) and the Grafana dashboard (poller/ops/dashboard.py).

Regenerate after changing a field: `make docs-reference` (python -m poller.cli.reference).
tests/unit/test_config_reference.py fails when a field lacks a description or the committed
files are stale.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import annotated_types as at
import yaml
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from poller.config import AppConfig
from poller.errors import EXIT_CODES
from poller.fleet.settings import WorkerConfig
from poller.ops.dashboard import render as render_dashboard

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path("docs/reference/configuration.md")
OPERATIONS = Path("docs/operations.md")  # holds the exit-code table between markers
DASHBOARD = Path("grafana/dashboards/poller.json")
SCHEMAS: dict[str, tuple[type[BaseModel], Path]] = {
    "poller": (AppConfig, Path("docs/reference/poller.schema.json")),
    "worker": (WorkerConfig, Path("docs/reference/worker.schema.json")),
}

# Debezium-style groups: the first path segment of a tenant's configuration -> its group.
GROUPS: dict[str, tuple[str, str]] = {
    "tenant": ("source", "Source: the database and the tenant"),
    "source": ("source", "Source: the database and the tenant"),
    "kafka": ("kafka", "Kafka: brokers, topics, transactions"),
    "schema_registry": ("registry", "Schema registry"),
    "entities": ("entity", "Entities: what is read and how"),
    "metrics": ("ops", "Operations: metrics, logs, retries"),
    "logging": ("ops", "Operations: metrics, logs, retries"),
    "retry": ("ops", "Operations: metrics, logs, retries"),
}
_PATH_PARAMS = {"entities": "<entity>"}


@dataclass(frozen=True)
class Leaf:
    """One configuration setting: a field that is not itself a section."""

    path: str
    info: FieldInfo
    annotation: Any

    @property
    def default(self) -> Any:
        if self.info.default_factory is not None:
            return self.info.default_factory()  # type: ignore[call-arg]
        return None if self.info.default is PydanticUndefined else self.info.default

    @property
    def required(self) -> bool:
        return self.info.is_required()

    @property
    def example(self) -> Any:
        if self.info.examples:
            return self.info.examples[0]
        return self.default


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The section model behind `Model`, `Model | None` or `dict[str, Model]`."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def leaves(model: type[BaseModel], prefix: str = "") -> Iterator[Leaf]:
    """Every setting of `model`, depth first, in the models' own order."""
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        sub = _model_of(info.annotation)
        if sub is None:
            yield Leaf(path, info, info.annotation)
            continue
        yield Leaf(path, info, info.annotation)  # the section itself, with its description
        if typing.get_origin(info.annotation) is dict:
            path = f"{path}.{_PATH_PARAMS.get(name, '<name>')}"
        yield from leaves(sub, f"{path}.")


def type_name(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        # Option values: a secret one is a string held as a secret, not another type to write.
        shown = [a for a in args if not (a is SecretStr and str in args)]
        return " \\| ".join(type_name(a) for a in shown)
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{m.value}`" for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "section"
    names = {str: "string", int: "integer", float: "number", bool: "boolean",
             SecretStr: "string (a secret: never shown)"}  # fmt: skip
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def constraints(info: FieldInfo) -> str:
    words = {at.Gt: ">", at.Ge: "≥", at.Lt: "<", at.Le: "≤"}
    out = []
    for m in info.metadata:
        for kind, sign in words.items():
            if isinstance(m, kind):
                out.append(f"{sign} {getattr(m, kind.__name__.lower())}")
        if isinstance(m, at.MinLen):
            out.append(f"at least {m.min_length} long")
        if isinstance(m, at.MaxLen):
            out.append(f"at most {m.max_length} long")
    return ", ".join(out)


def _yaml_value(value: Any) -> str:
    if isinstance(value, Enum):
        value = value.value
    text = yaml.safe_dump(
        value, default_flow_style=True, allow_unicode=True, width=1000, sort_keys=False
    )
    return text.removesuffix("\n...\n").strip()


def _example_yaml(leaf: Leaf) -> str:
    """The example as the YAML an operator writes, nested under its section(s)."""
    *parents, last = leaf.path.split(".")
    parents = ["customers" if p == "<entity>" else p for p in parents]
    lines = [f"{'  ' * i}{p}:" for i, p in enumerate(parents)]
    value = _yaml_value(leaf.example)
    if "\n" in value or len(value) > 80:
        value = f">\n{'  ' * (len(parents) + 1)}{value}"
    lines.append(f"{'  ' * len(parents)}{last}: {value}")
    return "\n".join(lines)


def _render(model: type[BaseModel], title: str, grouped: bool) -> list[str]:
    out: list[str] = []
    current = None
    for leaf in leaves(model):
        top = leaf.path.split(".")[0]
        group = GROUPS.get(top, ("", title))[1] if grouped else title
        if group != current:
            out += [f"## {group}", ""]
            current = group
        is_section = _model_of(leaf.annotation) is not None
        out += [f"### `{leaf.path}`", "", leaf.info.description or "", ""]
        if is_section:
            req = "required" if leaf.required else "optional"
            out += [f"A section ({req}); its settings follow.", ""]
            continue
        default = "required" if leaf.required else f"`{_yaml_value(leaf.default)}`"
        facts = [f"**type** {type_name(leaf.annotation)}", f"**default** {default}"]
        if c := constraints(leaf.info):
            facts.append(f"**constraints** {c}")
        out += [" · ".join(facts), "", "```yaml", _example_yaml(leaf), "```", ""]
    return out


def render_markdown() -> str:
    """docs/reference/configuration.md."""
    head = [
        "# Configuration reference",
        "",
        "<!-- generated by `make docs-reference` (python -m poller.cli.reference) from the",
        "     pydantic models in poller/config.py and poller/fleet/settings.py: do not edit -->",
        "",
        "Every setting of a tenant's `poller.yaml`, grouped as Debezium groups its connector's",
        "options, then the worker's `worker.yaml`. Each is validated before anything starts and",
        "every problem is listed at once with its path. `${NAME}` in any string is replaced by",
        "the environment variable `NAME`, `${file:/path}` by a file's content. The narrative",
        "(what the settings mean together) is in [Configuration](../configuration.md).",
        "",
        "Editors complete and check the files with the JSON Schemas",
        "[`poller.schema.json`](poller.schema.json) and [`worker.schema.json`](worker.schema.json)",
        "(also printed by `poller config schema [--worker]`); with the YAML language server, put",
        "`# yaml-language-server: $schema=<path or URL of poller.schema.json>` on a file's",
        "first line.",
        "",
    ]
    body = _render(AppConfig, "Tenant", grouped=True)
    worker = [
        "## Worker: `worker.yaml` (fleet)",
        "",
        "`poller worker --config worker.yaml`; every key is optional. Its `kafka` section takes",
        "the same settings as a tenant's (only the cluster and `topic_prefix` matter here).",
        "",
    ]
    for line in _render(WorkerConfig, "", grouped=False)[2:]:
        worker.append(
            line.replace("### `", "### `worker.", 1) if line.startswith("### `") else line
        )
    return "\n".join(head + body + worker).rstrip() + "\n"


def json_schema(which: str = "poller") -> str:
    model, _ = SCHEMAS[which]
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"{which}.yaml"
    return json.dumps(schema, indent=2, ensure_ascii=False, default=str) + "\n"


def exit_code_table() -> str:
    rows = ["| code | what happened | what to do |", "| ---: | --- | --- |"]
    rows += [f"| {code} | {meaning} | {action} |" for code, (meaning, action) in EXIT_CODES.items()]
    return "\n".join(rows)


def _with_region(text: str, name: str, body: str) -> str:
    """`text` with the part between `<!-- name -->` and `<!-- /name -->` replaced by `body`."""
    start, end = f"<!-- {name}: generated from poller/errors.py -->", f"<!-- /{name} -->"
    head, sep, rest = text.partition(start)
    _, sep2, tail = rest.partition(end)
    if not (sep and sep2):
        raise ValueError(f"markers {start} ... {end} not found")
    return f"{head}{start}\n{body}\n{end}{tail}"


def generated() -> dict[Path, str]:
    """Each generated file (relative to the repository) and its expected content."""
    files = {REFERENCE: render_markdown()}
    ops = (ROOT / OPERATIONS).read_text(encoding="utf-8")
    files[OPERATIONS] = _with_region(ops, "exit-codes", exit_code_table())
    files[DASHBOARD] = render_dashboard()
    for which, (_, path) in SCHEMAS.items():
        files[path] = json_schema(which)
    return files


def missing_descriptions() -> list[str]:
    """Settings without a description or without an example (a default counts as one)."""
    out = []
    for model, prefix in ((AppConfig, ""), (WorkerConfig, "worker.")):
        for leaf in leaves(model):
            if not leaf.info.description:
                out.append(f"{prefix}{leaf.path}: no description")
            if _model_of(leaf.annotation) is None and leaf.example is None:
                out.append(f"{prefix}{leaf.path}: no example (give Field(examples=[...]))")
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the generated files into the repository (or --check: list the stale ones)."""
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    stale = []
    for rel, text in generated().items():
        path = ROOT / rel
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(str(rel))
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    verb = "stale" if check else "written"
    print("\n".join(f"{verb}: {s}" for s in stale) or "up to date")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
