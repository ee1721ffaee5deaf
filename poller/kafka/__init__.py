"""Kafka: the transactional publisher, topics, the watermark store, reading topics back.

Imports poller.config, poller.errors, poller.avro, poller.batch (positions).
"""
