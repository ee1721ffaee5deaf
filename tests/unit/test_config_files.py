"""Bad configuration never shows a traceback: duplicate YAML keys, a binary or non-UTF-8 file,
an unknown database scheme, a tenant id that makes an invalid topic name. Each is an error
naming the path (and the key), and the CLI exits 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from poller.config import load_config, parse_config
from poller.errors import ConfigError
from poller.kafka.topics import topic_name_problems, wanted_topics

GOOD = """\
tenant: acme-corp
source:
  url: sqlite:///crm.db
kafka:
  bootstrap_servers: 127.0.0.1:1
schema_registry: {url: "http://127.0.0.1:1"}
metrics: {enabled: false}
entities:
  customers:
    table: customers
    key: id
    fields: {local_id: id}
    batching: {mode: id, column: id}
"""


def raw_config(**top: Any) -> dict[str, Any]:
    raw: dict[str, Any] = yaml.safe_load(GOOD)
    raw.update(top)
    return raw


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    return info.value.problems


def test_the_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(GOOD, encoding="utf-8")
    assert load_config(path).entities["customers"].batch_size == 10_000


def test_duplicate_keys_are_errors_naming_the_key_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(
        GOOD.replace("    key: id\n", "    key: id\n    batch_size: 10\n    batch_size: 20\n")
        + "tenant: other-corp\n",
        encoding="utf-8",
    )
    found = problems_of(path)
    assert any(
        p.startswith("entities.customers.batch_size: duplicate key (line 13; first at line 12)")
        for p in found
    ), found
    assert any(p.startswith("tenant: duplicate key (line 16; first at line 1)") for p in found)
    assert len(found) == 2, found


def test_duplicates_inside_lists_and_merges(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(
        "base: &b {x: 1}\nitems:\n  - {a: 1, a: 2}\nm:\n  <<: *b\n  x: 2\n", encoding="utf-8"
    )
    found = problems_of(path)
    assert found == [
        "items[0].a: duplicate key (line 3; first at line 3); YAML would silently keep the last one"
    ], found  # a merged key overridden by the mapping itself is not a duplicate


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"tenant: acme\xff\xfe\n", "not UTF-8 text (byte 0xff at offset 12)"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "a binary file, not YAML (NUL byte at offset 7)"),
        (b"tenant: 'acme\n", "YAML syntax"),
    ],
    ids=["latin1", "binary", "syntax"],
)
def test_unreadable_files_are_config_errors(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    found = problems_of(path)
    assert len(found) == 1 and found[0].startswith(expected), found


def test_a_secret_file_that_is_not_utf8(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_bytes(b"\xff\xfe")
    raw = raw_config()
    raw["kafka"]["options"] = {"sasl.password": f"${{file:{secret}}}"}
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.problems == [
        f"kafka.options.sasl.password: secret file {str(secret)!r} is not UTF-8 text"
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("foo://user:Pw-hidden-1@db/crm", "database 'foo' cannot be used (NoSuchModuleError"),
        ("postgresql+nodriver://u:Pw-hidden-1@db/crm", "database 'postgresql+nodriver'"),
    ],
)
def test_an_unknown_database_scheme_is_a_config_error(url: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw_config(source={"url": url}))
    (problem,) = info.value.problems
    assert problem.startswith(f"source.url: {expected}"), problem
    assert "Pw-hidden-1" not in str(info.value)


@pytest.mark.parametrize(
    ("tenant", "kafka"),
    [
        ("acme corp", {"topic_template": "{prefix}.{tenant}.{entity}"}),
        ("acme/corp", {"watermark_topic": "{prefix}.{tenant}.watermarks"}),
        ("ä" * 3, {"dead_letter_topic": "dlq-{tenant}"}),
    ],
)
def test_a_tenant_that_cannot_form_a_topic_name(tenant: str, kafka: dict[str, str]) -> None:
    cfg = parse_config(raw_config(tenant=tenant, kafka={"bootstrap_servers": "x:1", **kafka}))
    found = topic_name_problems(cfg)
    assert len(found) == 1 and f"(tenant {tenant!r}) is not a valid Kafka topic name" in found[0]
    assert found[0].startswith(f"kafka.{next(iter(kafka))}"), found
    with pytest.raises(ConfigError):
        wanted_topics(cfg)


def test_a_tenant_that_fits_every_template() -> None:
    cfg = parse_config(
        raw_config(tenant="acme-corp_2", kafka={"topic_template": "{prefix}.{tenant}.{entity}"})
    )
    assert topic_name_problems(cfg) == []


# ------------------------------------------------------------------------------------- CLI


CLI_CASES = {
    "duplicate": (GOOD + "tenant: again\n").encode(),
    "latin1": GOOD.replace("acme-corp", "acme-\xe7orp").encode("latin-1"),
    "binary": b"\x00\x01\x02\x03" * 8,
    "scheme": GOOD.replace("sqlite:///crm.db", "foo://u:pw@h/db").encode(),
    "topic": GOOD.replace("acme-corp", "acme corp")
    .replace("kafka:\n", "kafka:\n  topic_template: '{prefix}.{tenant}.{entity}'\n")
    .encode(),
}


# `check` of the topic case would also wait for the unreachable broker; `run` stops first.
@pytest.mark.parametrize(
    ("name", "command"),
    [(n, c) for n in CLI_CASES for c in ("check", "run") if (n, c) != ("topic", "check")],
)
def test_the_cli_exits_2_without_a_traceback(tmp_path: Path, name: str, command: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(CLI_CASES[name])
    proc = subprocess.run(
        [sys.executable, "-m", "poller", command, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert str(path) in proc.stderr or name == "topic", proc.stderr


def test_fleet_configurations_refuse_duplicate_keys_too(tmp_path: Path) -> None:
    from poller.fleet.settings import load_worker_config, parse_tenant_text

    with pytest.raises(ConfigError) as info:
        parse_tenant_text(GOOD + "tenant: again\n", "tenant.yaml", strict=False)
    assert info.value.problems[0].startswith("tenant: duplicate key"), info.value.problems
    worker = tmp_path / "worker.yaml"
    worker.write_bytes(b"kafka: {bootstrap_servers: a:1}\nkafka: {bootstrap_servers: b:1}\n")
    with pytest.raises(ConfigError) as info:
        load_worker_config(str(worker), {})
    assert info.value.problems[0].startswith("kafka: duplicate key"), info.value.problems
