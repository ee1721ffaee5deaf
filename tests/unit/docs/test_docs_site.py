"""The docs site: it builds with `mkdocs build --strict` (a broken link, anchor or a page
missing from the navigation fails), the README stays a one-page start, and every section of
the old 1,082-line README has a home in the docs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs"

# (section of the old README, the page it moved to, its first words there)
OLD_README_SECTIONS = [
    ("Quick start", "getting-started.md", "On a fresh machine (Debian 12 or similar), as ro"),
    (
        "The local stack: `scripts/services up|down|status [...]`",
        "getting-started.md",
        "| service | where | notes |",
    ),
    ("Configuration", "configuration.md", "YAML, validated before anything starts; every pr"),
    ("Batching modes", "configuration.md", "| mode | cursor | tie-breaker | sees updates | n"),
    ("Guarantees", "concepts.md", "- **Exactly once for `read_committed` consumers."),
    ("Kafka messages", "messages.md", "Two wire formats (`kafka.format`), with the same"),
    ("Consuming the topics", "messages.md", 'Python (`pip install "confluent-kafka[schemaregi'),
    ("Schema evolution", "messages.md", "The schemas in `schemas/` evolve only in ways th"),
    ("CLI", "operations.md", "poller run --config F [--once]        # continuo"),
    ("Verify and repair", "operations.md", "`poller verify` proves that each entity topic ho"),
    ("Status and heartbeats", "operations.md", "`poller status` prints one line per entity, and"),
    ("Backfill", "operations.md", "`poller backfill` publishes a range of an entity"),
    ("Entities", "messages.md", "Each entity is one Avro record (namespace `retai"),
    (
        "`customers` (record `Customer`)",
        "messages.md",
        "A loyalty-program member (card holder) as kept i",
    ),
    (
        "`receipts` (record `Receipt`)",
        "messages.md",
        "One purchase or return transaction (a till recei",
    ),
    ("`receipt_lines` (record `ReceiptLine`)", "messages.md", "One line (item) of a receipt."),
    (
        "`events` (record `Event`)",
        "messages.md",
        "Something a customer did or that happened to a c",
    ),
    ("`products` (record `Product`)", "messages.md", "An item of the assortment."),
    (
        "`product_categories` (record `ProductCategory`)",
        "messages.md",
        "A node of the product category tree.",
    ),
    (
        "`bonus_balances` (record `BonusBalance`)",
        "messages.md",
        "A customer's bonus (points) account balance.",
    ),
    ("`promo_codes` (record `PromoCode`)", "messages.md", "A promotional code and its use."),
    (
        "`watermark` (record `Watermark`)",
        "messages.md",
        "How far one tenant's entity has been copied (the",
    ),
    ("Observability", "operations.md", "Each poller process (one per tenant) serves thre"),
    ("Metrics", "operations.md", "Labels are `tenant` and `entity` (plus the small"),
    ("Logs", "operations.md", "`logging.format: json` writes one JSON object pe"),
    ("Alerts (`prometheus/alerts.yml`)", "operations.md", "| Alert | Fires when | Severity |"),
    ("Dashboard", "operations.md", "`grafana/dashboards/poller.json` (uid `poller`)"),
    (
        "Running a fleet",
        "fleet-and-kubernetes.md",
        "One poller process per tenant stays the unit of",
    ),
    (
        "Kubernetes (`deploy/kubernetes/`)",
        "fleet-and-kubernetes.md",
        "No cluster exists here; the manifests are valida",
    ),
    ("Performance", "performance.md", "Measured by `make bench` (code in `bench/`, meth"),
    ("Layout", "development.md", "The folders are the architecture. One row's way"),
]


def _mkdocs() -> list[str]:
    exe = Path(sys.executable).with_name("mkdocs")
    return [str(exe)] if exe.exists() else [shutil.which("mkdocs") or "mkdocs"]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [*_mkdocs(), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").exists()


def test_readme_is_a_one_page_start() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; move detail into docs/"
    text = "\n".join(lines)
    assert "make demo" in text and "make test" in text


@pytest.mark.parametrize(("section", "page", "words"), OLD_README_SECTIONS, ids=lambda v: v[:30])
def test_every_old_readme_section_has_a_home(section: str, page: str, words: str) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    assert words in text, f"old README section {section!r} is no longer in docs/{page}"


def test_readme_links_resolve() -> None:
    import re

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo:", "test:", "docs:", "docs-build:", "docs-reference:"):
        assert f"\n{target}" in makefile, target
