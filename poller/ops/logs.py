"""Logging setup: plain text or JSON lines. Tenant and entity ride on every record (from
`extra=` or the process-wide tenant), and URLs are always rendered without passwords."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re

# user:password@ after a scheme, up to the last '@' of the word (an unescaped '@' in a
# password must not end the redaction early); the user name may be empty.
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)\S*@")
# password=... in a URL query, a libpq DSN or an ODBC connection string.
_PASSWORD_PARAM = re.compile(r"(?i)\b(password|passwd|pwd)=[^\s;&'\"]+")


def redact(text: str) -> str:
    """Last line of defence: hide a password in any URL or DSN that reaches a log line."""
    return _PASSWORD_PARAM.sub(r"\1=***", _PASSWORD_IN_URL.sub(r"\1***@", text))


class _ContextFilter(logging.Filter):
    def __init__(self, tenant: str) -> None:
        super().__init__()
        self.tenant = tenant

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "tenant"):
            record.tenant = self.tenant
        if not hasattr(record, "entity"):
            record.entity = ""
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "tenant": getattr(record, "tenant", ""),
            "entity": getattr(record, "entity", ""),
            "message": redact(record.getMessage()),
        }
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s [%(tenant)s%(entity_sep)s%(entity)s] %(message)s"
        )

    def format(self, record: logging.LogRecord) -> str:
        record.entity_sep = "/" if getattr(record, "entity", "") else ""
        return redact(super().format(record))


def setup_logging(fmt: str = "text", level: str = "INFO", tenant: str = "") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_ContextFilter(tenant))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
