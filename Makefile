# poller: developer and CI entry points.  See scripts/services for the local stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BENCH_ARGS ?= --peer debezium
PEER_ARGS ?=

.PHONY: help venv services-up services-down test demo lint bench bench-peer

help:
	@echo "make venv           create $(VENV) and pip install -e '.[dev]'"
	@echo "make services-up    start Kafka, the schema registry, PostgreSQL, MariaDB (127.0.0.1) and install Prometheus"
	@echo "make services-down  stop them"
	@echo "make test           venv + services-up + pytest"
	@echo "make demo           venv + Kafka + schema registry + poller demo"
	@echo "make lint           ruff check, ruff format --check, mypy"
	@echo "make bench          venv + services-up + python -m bench.run \$$(BENCH_ARGS)"
	@echo "make bench-peer     only the Debezium side-by-side (bench/peer/), into bench/results/latest.json"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(VENV)/bin/python ]; then \
	  $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || scripts/services deps; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

services-up:
	scripts/services up

services-down:
	scripts/services down

test: venv services-up
	$(VENV)/bin/pytest

demo: venv
	scripts/services up kafka registry
	$(VENV)/bin/poller demo

lint: venv
	$(VENV)/bin/ruff check poller tests bench
	$(VENV)/bin/ruff format --check poller tests bench
	$(VENV)/bin/mypy

bench: venv services-up
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)

bench-peer: venv services-up
	$(VENV)/bin/python -m bench.run --peer debezium --peer-only $(PEER_ARGS)
