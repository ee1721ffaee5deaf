"""Fixtures shared by every test suite.

Service fixtures (Kafka, PostgreSQL, MariaDB) live in tests/integration/conftest.py;
suites in subfolders may add their own conftest.py next to their tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root directory."""
    return REPO_ROOT
