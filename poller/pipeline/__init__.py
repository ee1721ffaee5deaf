"""The pipeline: per-entity streams (batch -> messages + watermark), pre-flight, the run loop.

Imports source, avro, kafka, ops, config, errors; never cli or demo.
"""
