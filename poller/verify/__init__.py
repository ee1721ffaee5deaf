"""Proving and repairing a copy: `poller verify` (sort-merge of the source rows with the latest
record per key of each entity topic), `--repair`, and the scheduled delete reconciliation.

Imports pipeline (the entity stream: the poller's own encoder and message keys), source, kafka,
avro, config, errors; never cli or demo.
"""
