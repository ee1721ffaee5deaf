"""The model test uses the shared services' fixtures (per-test databases, Kafka)."""

from tests.integration.conftest import (  # noqa: F401 - fixtures
    kafka_bootstrap,
    mariadb_admin_url,
    mariadb_url,
    pg_admin_url,
    pg_url,
)
