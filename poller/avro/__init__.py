"""Avro: entity schemas, the generated hot-path encoder, value rules, decoding, the canonical
message key record (keys.py), the registry client.

Imports poller.config (registry settings) and poller.errors; schemas.py imports only errors, as
poller.config reads it to validate mappings.
"""
