"""Strict reading of YAML configuration: UTF-8 text, one document, no key given twice.

PyYAML silently keeps the last of two equal keys, so a second `batch_size:` further down an
entity would quietly win; here it is an error naming the key's path and both lines. Nothing of
the poller is imported (config builds on this), so problems come back as plain strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: Path) -> tuple[Any, list[str]]:
    """The document in `path` and the problems that stop it from being read (then None)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [f"cannot read {path}: {exc.strerror}"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [
            f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "is it the right file? Save it as UTF-8"
        ]
    if "\x00" in text:
        return None, [f"a binary file, not YAML (NUL byte at offset {text.index(chr(0))})"]
    return parse_yaml(text, str(path))


def parse_yaml(text: str, name: str = "configuration") -> tuple[Any, list[str]]:
    """`text` as one YAML document; `name` (the file) is what syntax errors point at."""
    loader = yaml.SafeLoader(text)
    loader.name = name  # PyYAML would say "<unicode string>"
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        problems: list[str] = []
        _duplicates(node, "", problems, set())
        if problems:
            return None, problems
        return loader.construct_document(node), []
    except yaml.YAMLError as exc:
        return None, [f"YAML syntax: {exc}"]
    except RecursionError:
        return None, ["YAML nested too deeply"]
    finally:
        loader.dispose()


def _duplicates(node: yaml.Node, path: str, problems: list[str], seen: set[int]) -> None:
    if id(node) in seen:  # an alias to a node already walked (and no endless recursion)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges a mapping
                _duplicates(value_node, path, problems, seen)
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            where = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key in first_line:
                problems.append(
                    f"{where}: duplicate key (line {line}; first at line {first_line[key]}); "
                    "YAML would silently keep the last one"
                )
            else:
                first_line.setdefault(key, line)
            _duplicates(value_node, where, problems, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _duplicates(item, f"{path}[{i}]", problems, seen)
