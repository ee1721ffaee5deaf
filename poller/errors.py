"""One exception tree for the whole poller.

Every error is either *transient* (the run loop backs off, rewinds to the last committed
watermark and tries again) or *terminal* (the process stops with a message saying what to do
and a non-zero exit code). Callers never need to inspect driver-specific exceptions.
"""

from __future__ import annotations

from collections.abc import Iterable


class PollerError(Exception):
    """Base of every error the poller raises on purpose."""

    exit_code = 1


class TransientError(PollerError):
    """Worth retrying: a database or broker went away, a transaction was aborted."""


class TerminalError(PollerError):
    """Retrying cannot help; a human must act."""


class ConfigError(TerminalError):
    """The configuration is invalid. Carries every problem found, each with its path."""

    exit_code = 2

    def __init__(self, problems: Iterable[str], source: str = "configuration") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} has {len(self.problems)} problem(s):\n{lines}")


class SourceError(TransientError):
    """The source database failed or went away; reconnect and resume from the watermark."""


class PrivilegeError(SourceError):
    """The poller's database user lacks a privilege. At start it is a mapping problem (exit 2);
    while running, the entity backs off alone until a DBA grants it again."""


class SchemaMismatchError(TerminalError):
    """A mapped column is missing or its type cannot fit the entity's Avro field."""

    exit_code = 2


class NoProgressError(TerminalError):
    """A batch did not move the entity's position forward: reading on would loop forever."""

    exit_code = 2


class BadValueError(TerminalError):
    """A single value does not fit its Avro field. The run loop adds tenant/entity/key."""

    def __init__(self, field: str, value: object, reason: str) -> None:
        self.field = field
        self.value_type = type(value).__name__
        self.reason = reason
        super().__init__(f"field {field!r} ({self.value_type}): {reason}")


class BadRowError(TerminalError):
    """A row cannot be encoded and the entity's policy is `fail`."""

    exit_code = 4

    def __init__(self, tenant: str, entity: str, key: object, cause: BadValueError) -> None:
        self.tenant, self.entity, self.key, self.cause = tenant, entity, key, cause
        super().__init__(
            f"tenant {tenant!r}, entity {entity!r}, key {key!r}: {cause}. The watermark was not "
            "moved past this row; fix the source row or mapping, or set on_bad_row: dead_letter."
        )


class PublishError(TransientError):
    """The Kafka transaction was aborted or could not commit; redo from the last watermark."""


class ProducerFailedError(PublishError):
    """The producer cannot be used any more (a librdkafka fatal error, or a transaction that
    could not be ended); the run loop replaces it, and the new one's init_transactions fences
    the old one and aborts what it left open."""


class BrokerUnavailableError(TransientError):
    """Kafka did not answer in time."""


class FencedError(TerminalError):
    """Another poller with the same transactional.id (same tenant) took over."""

    exit_code = 3


class KafkaFatalError(TerminalError):
    """librdkafka reported a fatal error, or a permission is missing."""

    exit_code = 5


class WatermarkRegressionError(TerminalError):
    """A new watermark would be behind the stored one; it is never saved."""

    exit_code = 6


class StartupError(TerminalError):
    """The database or Kafka could not be reached at start, or the mapping does not fit."""

    exit_code = 7


class IncompatibleSchemaError(TerminalError):
    """The schema registry refuses a schema (HTTP 409): it breaks the subject's compatibility
    rule, or (auto_register off) it was never registered."""

    exit_code = 2


class RegistryUnavailableError(TransientError):
    """The schema registry did not answer: network error, timeout or HTTP 5xx."""


class KafkaAuthorizationError(KafkaFatalError):
    """The broker refused an operation for want of an ACL: retrying cannot help (exit 5). The
    message names the principal (when known), the resource, its pattern and the operation."""


class KafkaAuthenticationError(KafkaFatalError):
    """SASL authentication failed or the broker's TLS certificate could not be verified: the
    real cause, not "not reachable" (exit 5)."""
