# poller: developer and CI entry points.  See scripts/services for the local stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BENCH_ARGS ?=

.PHONY: help venv services-up services-down test demo lint bench docs docs-build docs-reference

help:
	@echo "make venv           create $(VENV) and pip install -e '.[dev]'"
	@echo "make services-up    start Kafka, the schema registry, PostgreSQL, MariaDB (127.0.0.1) and install Prometheus"
	@echo "make services-down  stop them"
	@echo "make test           venv + services-up + pytest"
	@echo "make demo           venv + Kafka + schema registry + poller demo"
	@echo "make lint           ruff check, ruff format --check, mypy"
	@echo "make bench          venv + services-up + python -m bench.run \$$(BENCH_ARGS)"
	@echo "make docs           serve the docs site on http://127.0.0.1:8000 (mkdocs serve)"
	@echo "make docs-build     mkdocs build --strict into site/ (also part of make test)"
	@echo "make docs-reference regenerate docs/reference/ and the exit-code table from the code"

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

# The docs build (mkdocs build --strict), the config-reference test and the Dockerfile lint
# are tests in tests/unit/docs and tests/unit/deploy, so pytest alone runs them too.
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

docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

docs-build: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-reference: venv
	$(VENV)/bin/python -m poller.cli.reference
