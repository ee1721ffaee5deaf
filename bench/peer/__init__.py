"""A peer measured beside the poller on the same table: Debezium's PostgreSQL connector in Kafka
Connect standalone (`python -m bench.run --peer debezium`, `make bench-peer`)."""
