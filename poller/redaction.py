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
# The key: any name holding password/passwd/pwd/secret/token (sslpassword, ssl_key_password,
# wallet_password, client_secret, access_token, sasl.oauthbearer.client.secret, ...) and
# basic.auth.user.info (user:password).
_SECRET_KEY = r"(?:[\w.-]*?(?:password|passwd|pwd|secret|token)[\w.-]*|basic\.auth\.user\.info)"
_PASSWORD_PARAM = re.compile(
    r"(?i)(?:\b|(?<=%3b)|(?<=%26)|(?<=%253b)|(?<=%2526))(" + _SECRET_KEY + r")(\s*" + _EQ + r"\s*)"
    r"(?:\{(?:[^}]|\}\})*\}|%7b(?:(?!%7d).)*%7d|%257b(?:(?!%257d).)*%257d"
    r"|(?:(?!" + _SEP + r")[^\s;&'\"])+)"
)


# 'sasl.password': 'x' / "client_secret": "x" (a mapping printed as repr or JSON).
_QUOTED_SECRET = re.compile(r"(?i)(['\"]" + _SECRET_KEY + r"['\"]\s*:\s*)(['\"])((?:(?!\2).)*)\2")


def redact(text: str) -> str:
    """Last line of defence: hide a password in any URL or DSN in `text`, and the value of
    any password/secret/token key."""
    text = _PASSWORD_PARAM.sub(r"\1\2***", _PASSWORD_IN_URL.sub(r"\1***@", text))
    return _QUOTED_SECRET.sub(r"\1\2***\2", text)
