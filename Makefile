# poller: developer and CI entry points.  See scripts/services for the local stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BENCH_ARGS ?=

.PHONY: help venv services-up services-down test demo lint bench soak

help:
	@echo "make venv           create $(VENV) and pip install -e '.[dev]'"
	@echo "make services-up    start Kafka, the schema registry, PostgreSQL, MariaDB (127.0.0.1) and install Prometheus"
	@echo "make services-down  stop them"
	@echo "make test           venv + services-up + pytest"
	@echo "make demo           venv + Kafka + schema registry + poller demo"
	@echo "make lint           ruff check, ruff format --check, mypy"
	@echo "make bench          venv + services-up + python -m bench.run \$$(BENCH_ARGS)"
	@echo "make soak           the model-based interleaving test at length: SOAK_SCHEDULES (5000) from SOAK_SEED (1000)"

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

# The model test (tests/model) with SOAK_SCHEDULES schedules in all, spread over its 6 cases
# (2 databases x 3 batching modes), seeds SOAK_SEED...; every failing seed is listed at the end.
SOAK_SCHEDULES ?= 5000
SOAK_SEED ?= 1000
soak: venv services-up
	MODEL_SCHEDULES=$$(( ($(SOAK_SCHEDULES) + 5) / 6 )) MODEL_SEED=$(SOAK_SEED) MODEL_KEEP_GOING=1 \
	  $(VENV)/bin/pytest tests/model/test_interleavings.py -p no:cacheprovider --timeout=0 -s -q

bench: venv services-up
	$(VENV)/bin/python -m bench.run $(BENCH_ARGS)
