"""The configuration reference and JSON Schemas are generated from the pydantic models: every
setting is described, and the committed files match what the models say today."""

from __future__ import annotations

import json

import jsonschema
import pytest

from poller.cli import reference
from poller.cli.main import main


def test_every_setting_has_a_description_and_an_example() -> None:
    assert reference.missing_descriptions() == []


@pytest.mark.parametrize("rel", list(reference.generated()), ids=str)
def test_generated_file_is_up_to_date(rel) -> None:  # type: ignore[no-untyped-def]
    path = reference.ROOT / rel
    assert path.exists() and path.read_text(encoding="utf-8") == reference.generated()[rel], (
        f"{rel} is stale: run `make docs-reference` and commit the result"
    )


def test_reference_lists_every_setting_once() -> None:
    text = reference.render_markdown()
    for leaf in reference.leaves(reference.AppConfig):
        assert text.count(f"### `{leaf.path}`\n") == 1, leaf.path
    for leaf in reference.leaves(reference.WorkerConfig):
        assert text.count(f"### `worker.{leaf.path}`\n") == 1, leaf.path


def test_groups_follow_debezium() -> None:
    text = reference.render_markdown()
    titles = [line for line in text.splitlines() if line.startswith("## ")]
    assert titles == [
        "## Source: the database and the tenant",
        "## Kafka: brokers, topics, transactions",
        "## Schema registry",
        "## Entities: what is read and how",
        "## Operations: metrics, logs, retries",
        "## Worker: `worker.yaml` (fleet)",
    ]


def test_every_example_is_valid_for_the_schema() -> None:
    """The examples are what an operator would copy: each passes the same JSON Schema."""
    schema = json.loads(reference.json_schema("poller"))
    minimal = {
        "tenant": "acme",
        "source": {"url": "sqlite:///crm.db"},
        "schema_registry": {"url": "http://127.0.0.1:8081"},
        "entities": {
            "customers": {
                "table": "customers",
                "key": "id",
                "fields": {"local_id": "id"},
                "batching": {"mode": "id", "column": "id"},
            }
        },
    }
    jsonschema.validate(minimal, schema)
    bad = {**minimal, "kafka": {"topic_partitons": 3}}
    with pytest.raises(jsonschema.ValidationError, match="topic_partitons"):
        jsonschema.validate(bad, schema)


def test_config_schema_command_prints_the_committed_schema(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["config", "schema"]) == 0
    assert capsys.readouterr().out == reference.json_schema("poller")
    assert main(["config", "schema", "--worker"]) == 0
    assert json.loads(capsys.readouterr().out)["title"] == "worker.yaml"
