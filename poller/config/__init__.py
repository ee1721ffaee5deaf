"""Configuration: YAML in, a validated, typed `AppConfig` out, or one `ConfigError` listing
every problem with its path.

Secrets never live in the file: `${NAME}` is replaced by the environment variable NAME and
`${file:/path}` by the file's content (trailing newline stripped). One module per part of the
file (source, kafka, entity, ops), the whole (app), its loading, and the catalog of entities
and fields read from `schemas/`; every name is here too. Imports only poller.errors,
poller.redaction and poller.yamlfile: everything else imports the configuration.
"""

from poller.config.app import (
    AppConfig,
)
from poller.config.base import (
    _PLACEHOLDER,
    IDENTIFIER,
    SETTLE_FALLBACK_S,
    SETTLE_WITH_HORIZON_S,
    Mode,
    _Model,
    check_identifier,
)
from poller.config.entity import (
    _SHARE,
    Batching,
    DeletesConfig,
    EntityConfig,
)
from poller.config.kafka import (
    _CLIENT_OPTION_PREFIXES,
    PER_TENANT_TEMPLATES,
    BasicAuth,
    Compatibility,
    KafkaConfig,
    SchemaRegistryConfig,
)
from poller.config.loading import (
    KAFKA_FILE_OPTIONS,
    _expand,
    _format_pydantic,
    _known_keys,
    _schema_problems,
    format_problems,
    load_config,
    option_file_problems,
    parse_config,
    resolve_references,
)
from poller.config.ops import (
    EndpointAuthConfig,
    EndpointTLSConfig,
    LoggingConfig,
    MetricsConfig,
    RetryConfig,
)
from poller.config.source import (
    SourceConfig,
)

__all__ = [
    "IDENTIFIER",
    "KAFKA_FILE_OPTIONS",
    "PER_TENANT_TEMPLATES",
    "SETTLE_FALLBACK_S",
    "SETTLE_WITH_HORIZON_S",
    "_CLIENT_OPTION_PREFIXES",
    "_PLACEHOLDER",
    "_SHARE",
    "AppConfig",
    "BasicAuth",
    "Batching",
    "Compatibility",
    "DeletesConfig",
    "EndpointAuthConfig",
    "EndpointTLSConfig",
    "EntityConfig",
    "KafkaConfig",
    "LoggingConfig",
    "MetricsConfig",
    "Mode",
    "RetryConfig",
    "SchemaRegistryConfig",
    "SourceConfig",
    "_Model",
    "_expand",
    "_format_pydantic",
    "_known_keys",
    "_schema_problems",
    "check_identifier",
    "format_problems",
    "load_config",
    "option_file_problems",
    "parse_config",
    "resolve_references",
]
