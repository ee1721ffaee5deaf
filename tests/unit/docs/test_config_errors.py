"""Configuration errors an operator can act on: a misspelt key gets the closest known key,
and a YAML syntax error names the file, not `<unicode string>`."""

from __future__ import annotations

from pathlib import Path

import pytest

from poller.config import load_config
from poller.errors import ConfigError
from poller.fleet.settings import load_worker_config

CONFIG = """\
tenant: a
source: {url: "sqlite:///x.db", timezon: UTC}
kafka: {format: single_object, topic_partitons: 3}
entities:
  custmers:
    table: c
    key: id
    fields: {local_id: id}
    batching: {mode: id, column: id}
  customers:
    table: c
    key: id
    fields: {local_id: id}
    batchin: {mode: id, column: id}
    batching: {mode: id, column: id, colum: x}
retri: {}
"""


def test_unknown_keys_get_did_you_mean(tmp_path: Path) -> None:
    path = tmp_path / "poller.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problems = err.value.problems
    for line in (
        "source.timezon: unknown key; did you mean 'timezone'?",
        "kafka.topic_partitons: unknown key; did you mean 'topic_partitions'?",
        "entities.customers.batching.colum: unknown key; did you mean 'column'?",
        "entities.customers.batchin: unknown key; did you mean 'batching'?",
        "retri: unknown key; did you mean 'retry'?",
    ):
        assert line in problems, problems
    assert any(
        "entities.custmers: unknown entity (did you mean 'customers'?" in p for p in problems
    )


def test_unknown_key_without_a_close_one_lists_the_known(tmp_path: Path) -> None:
    path = tmp_path / "poller.yaml"
    path.write_text(CONFIG.replace("retri: {}", "zzz: 1"), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any(
        p.startswith("zzz: unknown key (known here: tenant, source") for p in err.value.problems
    )


def test_worker_config_unknown_key(tmp_path: Path) -> None:
    path = tmp_path / "worker.yaml"
    path.write_text("max_tenant: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_worker_config(str(path), {})
    assert "max_tenant: unknown key; did you mean 'max_tenants'?" in err.value.problems


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "poller.yaml"
    path.write_text("tenant: a\nsource: {url: x\n  bad: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert f'in "{path}", line 2' in text and "<unicode string>" not in text
