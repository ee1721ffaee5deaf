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
    """Worth retrying: a database or broker went away, a transaction was aborted. `run`
    retries these; a one-shot command (`status`, `verify`, ...) that meets one exits 7."""

    exit_code = 7  # EXIT_UNREACHABLE, not 1: no bug, and running it again can help


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


class OpenTransactionError(BrokerUnavailableError):
    """A read waited in vain for a record written by a transaction that has not ended (a
    writer killed mid-commit leaves one open until it is fenced or times out)."""


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


class RegistryTLSError(StartupError):
    """TLS to the schema registry failed for a reason retrying cannot mend: its certificate is
    not signed by a trusted CA, or it wants a client certificate that is missing or refused.
    Named, not "did not answer" (exit 7, like the other start-up failures)."""


class KafkaAuthorizationError(KafkaFatalError):
    """The broker refused an operation for want of an ACL: retrying cannot help (exit 5). The
    message names the principal (when known), the resource, its pattern and the operation."""


class KafkaAuthenticationError(KafkaFatalError):
    """SASL authentication failed or the broker's TLS certificate could not be verified: the
    real cause, not "not reachable" (exit 5)."""


class HorizonNotReachedError(TerminalError):
    """`run --once` could not read up to its start time within --max-wait: open source
    transactions held the read bound back. What was committed before them was published."""

    exit_code = 9  # EXIT_HORIZON


class TooManyDeletesError(TerminalError):
    """A delete reconciliation pass would tombstone more of an entity's keys than its
    `repair_max_tombstone_share`: nothing is tombstoned (the live poller goes on)."""


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
EXIT_HORIZON = 9
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
        "unreachable: the database, Kafka or the schema registry did not answer within "
        "`retry.startup_timeout_s` at start (nothing written), or in time for a one-shot "
        "command such as `status` or `verify` (also: an open Kafka transaction held its read "
        "back), or another process holds the metrics port",
        "check the network, the URLs and credentials; run it again",
    ),
    EXIT_SCHEMA: (
        "schema or drift: the mapping does not fit the source (a column missing or of the "
        "wrong type, at start or while running), a batch that cannot move forward, or the "
        "registry refuses a schema as incompatible",
        "fix the mapping or the source; for the registry, the subject's compatibility",
    ),
    EXIT_HORIZON: (
        "horizon not reached: `run --once` copied everything committed before the open source "
        "transactions, but they still held the read bound below its start time after "
        "`--max-wait` (the output names them)",
        "run it again later, or end the long transaction; docs/horizon.md",
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


# A file where the `poller` command writes the error it stops on (a worker sets it per child).
REASON_FILE_ENV = "POLLER_EXIT_REASON_FILE"

# Exits a new process cannot get past on its own: a worker does not restart a tenant that
# exited with one of them (the tenant is FAILED, with its cause, until its configuration
# changes or an operator restarts it). Other exits are restarted with backoff.
NEEDS_A_HUMAN = frozenset(
    {EXIT_CONFIG, EXIT_BAD_ROW, EXIT_KAFKA_FATAL, EXIT_WATERMARK_REGRESSION, EXIT_SCHEMA}
)


def restart_helps(code: int) -> bool:
    """Whether starting the process again can get past an exit with `code`."""
    return code not in NEEDS_A_HUMAN


def describe_exit(code: int) -> str:
    """A process's exit status in words: `exited 4 (bad row)`, `killed by SIGKILL`."""
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    meaning = EXIT_CODES.get(code)
    return f"exited {code} ({meaning[0].split(':')[0]})" if meaning else f"exited {code}"
