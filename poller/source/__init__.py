"""The source database: keyset SELECTs per dialect, engines, streaming batch reads, prefetch.

Imports poller.config, poller.errors, poller.avro; never kafka, ops or pipeline.
"""
