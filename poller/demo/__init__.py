"""The demo: a sample CRM for two tenants and the `poller demo` command.

Imports anything below cli.
"""
