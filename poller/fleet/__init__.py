"""The worker fleet: workers that lease tenants through Kafka's consumer group on the tenants
topic and run each tenant as a child `poller run` process.

Imports kafka, ops, source (the limits' environment variable), config, errors; never pipeline
(tenants run in their own processes), demo or cli.
"""
