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


class HorizonNotReachedError(TerminalError):
    """`run --once` could not read up to its start time within --max-wait: open source
    transactions held the read bound back. What was committed before them was published."""

    exit_code = 9


class TooManyDeletesError(TerminalError):
    """A delete reconciliation pass would tombstone more of an entity's keys than its
    `repair_max_tombstone_share`: nothing is tombstoned (the live poller goes on)."""


# -- exit codes, for whoever runs the process (a worker, systemd, Kubernetes) -------------------

# A file where the `poller` command writes the error it stops on (a worker sets it per child).
EXIT_REASON_ENV = "POLLER_EXIT_REASON_FILE"

# Errors that a new process cannot get past on its own: a worker does not restart a tenant
# that exited with one of their codes (the tenant is FAILED, with its cause, until its
# configuration changes or an operator restarts it). Other exits are restarted with backoff.
_NEEDS_A_HUMAN: tuple[type[PollerError], ...] = (
    ConfigError,
    SchemaMismatchError,
    NoProgressError,
    IncompatibleSchemaError,
    BadRowError,
    KafkaFatalError,
    WatermarkRegressionError,
)


def _error_classes() -> list[type[PollerError]]:
    out: list[type[PollerError]] = []
    todo: list[type[PollerError]] = [PollerError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def _words(cls: type[PollerError]) -> str:
    name = cls.__name__.removesuffix("Error")
    return "".join(f" {c.lower()}" if c.isupper() else c for c in name).strip()


def exit_names(code: int) -> list[str]:
    """The errors that exit with `code` (empty for a code the poller never chooses)."""
    return sorted(
        {
            _words(cls)
            for cls in _error_classes()
            # the classes that choose their code; transient errors are retried in a run
            if cls.exit_code == code and "exit_code" in vars(cls)
        }
    )


def restart_helps(code: int) -> bool:
    """Whether starting the process again can get past an exit with `code`."""
    classes = [c for c in _error_classes() if c.exit_code == code]
    return not classes or not all(issubclass(c, _NEEDS_A_HUMAN) for c in classes)


def describe_exit(code: int) -> str:
    """A process's exit status in words: `exited 4 (bad row)`, `killed by SIGKILL`."""
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    names = exit_names(code)
    return f"exited {code} ({' / '.join(names)})" if names else f"exited {code}"
