"""Operations: Prometheus metrics, the /metrics /healthz /readyz server, probes, logging.

Imports poller.config, poller.errors and the layers below; never pipeline or cli.
"""
