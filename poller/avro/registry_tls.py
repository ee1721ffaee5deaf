"""TLS to the schema registry: a named error for a failure retrying cannot mend (an untrusted
certificate, a missing or refused client certificate) instead of "did not answer", and a warning
when credentials would travel over plain http://."""

from __future__ import annotations

import logging
import ssl

from poller.config import SchemaRegistryConfig

log = logging.getLogger(__name__)

_warned_plaintext: set[str] = set()


def warn_plaintext_credentials(cfg: SchemaRegistryConfig) -> None:
    """Warn (once per URL and process) when credentials would go over plain http://."""
    creds = (
        cfg.basic_auth is not None
        or "basic.auth.user.info" in cfg.options
        or "bearer.auth.token" in cfg.options
    )
    for url in (u.strip() for u in cfg.safe_url.split(",")):
        has_userinfo = "@" in url.split("//", 1)[-1].split("/", 1)[0]
        plaintext = url.lower().startswith("http://") and (creds or has_userinfo)
        if plaintext and url not in _warned_plaintext:
            _warned_plaintext.add(url)
            log.warning(
                "schema registry %s: credentials are sent unencrypted over http://; "
                "use https:// (docs/security.md: The schema registry over HTTPS)",
                url,
            )


# OpenSSL reasons of a handshake the server refused for want of (a good) client certificate.
_CLIENT_CERT_REFUSED = (
    "CERTIFICATE_REQUIRED",
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_UNKNOWN",
    "HANDSHAKE_FAILURE",
)


def tls_failure(exc: BaseException, cfg: SchemaRegistryConfig) -> str | None:
    """What went wrong if `exc` (an HTTP client error) comes from a TLS failure retrying cannot
    mend, else None (a network error: transient)."""
    cause: BaseException | None = exc
    for _ in range(10):  # the chain is short; a bound against a cycle
        if cause is None or isinstance(cause, ssl.SSLError):
            break
        cause = cause.__cause__ or cause.__context__
    if not isinstance(cause, ssl.SSLError):
        return None
    reason = str(getattr(cause, "reason", None) or cause)
    if isinstance(cause, ssl.SSLCertVerificationError):
        why = getattr(cause, "verify_message", None) or reason
        ca = cfg.options.get("ssl.ca.location")
        trusted = (
            f"the CA in schema_registry.options ssl.ca.location ({ca})"
            if ca
            else "the system's CAs (set schema_registry.options ssl.ca.location to its CA)"
        )
        return (
            f"TLS certificate verification failed ({why}): the "
            f"registry's certificate is not signed by {trusted}, or does not name the host"
        )
    if any(r in reason.upper() for r in _CLIENT_CERT_REFUSED):
        cert = cfg.options.get("ssl.certificate.location")
        if not cert:
            return (
                f"the registry requires a TLS client certificate and none is configured "
                f"({reason}); set schema_registry.options ssl.certificate.location and "
                "ssl.key.location"
            )
        return (
            f"the registry refused the TLS client certificate {cert} ({reason}): is it signed "
            "by a CA the registry trusts?"
        )
    return None
