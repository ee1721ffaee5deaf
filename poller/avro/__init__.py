"""Avro: entity schemas, the generated hot-path encoder, value rules, decoding.

Imports only poller.errors (and the standard library, fastavro).
"""
