"""The `poller` command: one module per command group, each with add_parser() and its command.

The top layer: may import every other subpackage; nothing imports it.
"""
