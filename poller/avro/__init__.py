"""Avro: entity schemas, the generated hot-path encoder, value rules, decoding, the canonical
message key record (keys.py), the registry client.

Imports poller.config (registry settings, the entity catalog) and poller.errors.
"""
