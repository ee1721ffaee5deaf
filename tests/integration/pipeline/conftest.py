"""Fixtures of the pipeline tests: a unique topic prefix whose topics are deleted after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.pipeline.helpers import (
    topics_deleted_after,
    unique_prefix,
)


@pytest.fixture
def prefix(kafka_bootstrap: str) -> Iterator[str]:
    """A unique topic prefix (also the transactional id prefix); its topics are deleted after."""
    p = unique_prefix()
    with topics_deleted_after(kafka_bootstrap, p):
        yield p
