"""Fault tests: the real poller process against the real broker and databases, under crashes,
fencing, outages and bad rows. Harness in conftest.py."""
