"""Hiding passwords in any text before it is shown: log lines, error messages, printed URLs.
Imports nothing of the poller (config and ops.logs build on this)."""

from __future__ import annotations

import re

# user:password@ after a scheme, up to the last '@' of the word (an unescaped '@' in a
# password must not end the redaction early); the user name may be empty.
_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)\S*@")
# password=... in a URL query, a libpq DSN or an ODBC connection string, also where that
# string is itself percent-encoded in a URL (odbc_connect=...PWD%3Dsecret%3B..., once or
# twice): '=' may be %3D, ';' %3B and '&' %26. An ODBC value in braces may hold ';'.
_EQ = r"(?:=|%3d|%253d)"
_SEP = r"%3b|%26|%253b|%2526"
_PASSWORD_PARAM = re.compile(
    r"(?i)(?:\b|(?<=%3b)|(?<=%26)|(?<=%253b)|(?<=%2526))(password|passwd|pwd)(\s*" + _EQ + r"\s*)"
    r"(?:\{(?:[^}]|\}\})*\}|%7b(?:(?!%7d).)*%7d|%257b(?:(?!%257d).)*%257d"
    r"|(?:(?!" + _SEP + r")[^\s;&'\"])+)"
)


def redact(text: str) -> str:
    """Last line of defence: hide a password in any URL or DSN in `text`."""
    return _PASSWORD_PARAM.sub(r"\1\2***", _PASSWORD_IN_URL.sub(r"\1***@", text))
