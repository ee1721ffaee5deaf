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


class UsageError(TerminalError):
    """A command that cannot do what was asked as asked (a refused reset, a topic that does not
    exist yet, an unknown tenant): the message says what to run instead."""

    exit_code = 2


class SourceError(TransientError):
    """The source database failed or went away; reconnect and resume from the watermark."""


class PrivilegeError(SourceError):
    """The poller's database user lacks a privilege. At start it is a mapping problem (exit 8);
    while running, the entity backs off alone until a DBA grants it again."""


class SchemaMismatchError(TerminalError):
    """A mapped column is missing or its type cannot fit the entity's Avro field."""

    exit_code = 8  # EXIT_SCHEMA


class NoProgressError(TerminalError):
    """A batch did not move the entity's position forward: reading on would loop forever."""

    exit_code = 8  # EXIT_SCHEMA


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

    exit_code = 8  # EXIT_SCHEMA


class RegistryUnavailableError(TransientError):
    """The schema registry did not answer: network error, timeout or HTTP 5xx."""


# ---------------------------------------------------------------------------------------------
# Exit codes: one table for every command. The exceptions above carry theirs; `poller --help`
# and docs/operations.md are generated from this table (python -m poller.cli.reference).

EXIT_OK = 0
EXIT_CRASHED = 1
EXIT_CONFIG = 2
EXIT_FENCED = 3
EXIT_BAD_ROW = 4
EXIT_KAFKA_FATAL = 5
EXIT_WATERMARK_REGRESSION = 6
EXIT_UNREACHABLE = 7
EXIT_SCHEMA = 8
EXIT_DIFFERENCES = 10
EXIT_INTERRUPTED = 130

# code -> (what happened, what to do)
EXIT_CODES: dict[int, tuple[str, str]] = {
    EXIT_OK: (
        "done: caught up (`--once`), stopped by SIGTERM/SIGINT after the current batch, or a "
        "check/verify that found nothing wrong",
        "nothing",
    ),
    EXIT_CRASHED: (
        "crashed: an unexpected error (a bug or an unclassified driver error); the traceback "
        "is printed with passwords removed",
        "restart; if it repeats, report the traceback",
    ),
    EXIT_CONFIG: (
        "usage or configuration: a wrong option, an invalid or unreadable configuration file "
        "(every problem listed with its path), a stored watermark of another mode, a refused "
        "command (e.g. a reset while the tenant's poller runs)",
        "fix the command or the file; `poller check` lists every problem",
    ),
    EXIT_FENCED: (
        "fenced: another poller of the same tenant (same transactional.id) took over",
        "make sure one process runs per tenant; nothing was lost",
    ),
    EXIT_BAD_ROW: (
        "bad row: a value does not fit its Avro field and `on_bad_row` is `fail`; the "
        "watermark stays just before the row",
        "fix the source row or the mapping, or set `on_bad_row: dead_letter`",
    ),
    EXIT_KAFKA_FATAL: (
        "Kafka fatal: librdkafka reported a fatal error or a permission (ACL) is missing",
        "grant the ACL or fix the Kafka options, then restart",
    ),
    EXIT_WATERMARK_REGRESSION: (
        "watermark regression: a new watermark would be behind the stored one (never saved)",
        "find who moved the source's cursor backwards; move it on purpose with "
        "`poller watermarks reset`",
    ),
    EXIT_UNREACHABLE: (
        "unreachable at start: the database, Kafka or the schema registry did not answer "
        "within `retry.startup_timeout_s` (nothing written)",
        "check the network, the URLs and credentials; restart",
    ),
    EXIT_SCHEMA: (
        "schema or drift: the mapping does not fit the source (a column missing or of the "
        "wrong type, at start or while running), a batch that cannot move forward, or the "
        "registry refuses a schema as incompatible",
        "fix the mapping or the source; for the registry, the subject's compatibility",
    ),
    EXIT_DIFFERENCES: (
        "differences found: `poller verify` found rows missing, extra or different in the "
        "topic (or a repair left some)",
        "read the report; `poller verify --repair` or a `poller backfill`",
    ),
    EXIT_INTERRUPTED: ("interrupted: Ctrl-C before a clean stop", "nothing; run it again"),
}


def exit_codes_epilog() -> str:
    """The table as argparse help text (codes and their first words)."""
    return "exit codes (docs/operations.md says what to do):\n" + "\n".join(
        f"  {code:>3}  {meaning.split(':')[0]}" for code, (meaning, _) in EXIT_CODES.items()
    )
