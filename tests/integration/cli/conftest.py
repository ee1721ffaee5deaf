"""Fixtures of the CLI tests: the pipeline tests' unique topic prefix, deleted after."""

from tests.integration.pipeline.conftest import prefix

__all__ = ["prefix"]
