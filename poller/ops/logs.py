"""Logging setup: plain text or JSON lines. Tenant and entity ride on every record (from
`extra=` or the process-wide tenant), and URLs are always rendered without passwords."""

from __future__ import annotations

import datetime as dt
import json
import logging

from poller.redaction import redact

__all__ = ["JsonFormatter", "TextFormatter", "redact", "setup_logging"]


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
