"""The canonical schemas evolve only in FULL_TRANSITIVE-compatible ways: every version of each
schemas/<entity>.avsc in git history (then the working copy, if it differs) is registered in
order under FULL_TRANSITIVE in the real registry, and a 409 fails the test naming the commit."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from poller.avro.schemas import ENTITIES

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, f"git {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def history(repo: Path, path: str) -> list[tuple[str, str]]:
    """(commit, text) of every committed version of `path`, oldest first, then
    ("working copy", text) when the file on disk differs from the last commit."""
    commits = git(repo, "log", "--reverse", "--format=%h", "--", path).split()
    versions: list[tuple[str, str]] = []
    for c in commits:
        text = subprocess.run(
            ["git", "-C", str(repo), "show", f"{c}:{path}"],
            capture_output=True, text=True, check=False, timeout=60,
        ).stdout  # fmt: skip
        if text and (not versions or versions[-1][1] != text):  # empty: deleted in c
            versions.append((c, text))
    on_disk = (repo / path).read_text(encoding="utf-8")
    if not versions or versions[-1][1] != on_disk:
        versions.append(("working copy", on_disk))
    return versions


def first_refused(
    client: SchemaRegistryClient, subject: str, versions: list[tuple[str, str]]
) -> str | None:
    """Registers the versions in order under FULL_TRANSITIVE; the first refusal, or None."""
    client.set_compatibility(subject, "FULL_TRANSITIVE")
    for where, text in versions:
        try:
            client.register_schema(subject, Schema(json.dumps(json.loads(text)), "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 409:  # Apicurio answers error_code 0: trust the status
                return f"{where}: {exc.error_message}"
            raise
    return None


@pytest.fixture
def client(registry_url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry_url})


@pytest.mark.parametrize("entity", ENTITIES)
def test_every_version_in_history_is_full_transitive_compatible(
    entity: str, client: SchemaRegistryClient
) -> None:
    versions = history(REPO, f"schemas/{entity}.avsc")
    assert versions, entity
    subject = f"evolution-{uuid.uuid4().hex[:10]}.{entity}-value"
    try:
        refused = first_refused(client, subject, versions)
    finally:
        client.delete_subject(subject)
    assert refused is None, (
        f"schemas/{entity}.avsc breaks FULL_TRANSITIVE compatibility at {refused}. "
        "Add fields as nullable with default null, rename with aliases "
        "(docs/messages.md: Schema evolution)"
    )


def test_an_incompatible_change_in_history_is_caught(
    tmp_path: Path, client: SchemaRegistryClient
) -> None:
    """The check can fail: a history that adds a required field is refused at that commit,
    while adding a nullable field with a default passes."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    base = json.loads((REPO / "schemas" / "customers.avsc").read_text(encoding="utf-8"))
    steps = [
        ("v1", base),
        ("v2 nullable", {**base, "fields": [*base["fields"],
         {"name": "tier", "type": ["null", "string"], "default": None}]}),
        ("v3 required", {**base, "fields": [*base["fields"],
         {"name": "tier", "type": ["null", "string"], "default": None},
         {"name": "segment", "type": "string"}]}),
    ]  # fmt: skip
    (repo / "schemas").mkdir()
    for message, schema in steps:
        (repo / "schemas" / "customers.avsc").write_text(json.dumps(schema, indent=2))
        git(repo, "add", "schemas")
        git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com",
            "commit", "-q", "-m", message)  # fmt: skip
    versions = history(repo, "schemas/customers.avsc")
    assert len(versions) == 3
    subject = f"evolution-{uuid.uuid4().hex[:10]}.customers-value"
    try:
        refused = first_refused(client, subject, versions)
        assert refused is not None and refused.startswith(versions[2][0]), refused
        assert "segment" in refused
        assert len(client.get_versions(subject)) == 2
    finally:
        client.delete_subject(subject)
