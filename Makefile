# poller: developer and CI entry points.  See scripts/services for the local stack.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
NATIVE_STAMP := $(VENV)/.native-installed
MYSQL_STAMP := $(VENV)/.mysqlclient-installed
NATIVE_SRC := $(wildcard native/Cargo.toml native/Cargo.lock native/pyproject.toml native/src/*.rs)
# cargo's build cache, kept between `make venv` runs (a rebuild after an edit takes seconds)
export CARGO_TARGET_DIR ?= $(CURDIR)/native/target
BENCH_ARGS ?= --peer debezium
# A git revision (tag, commit) run end to end in turn with this tree: the hot path's same-run ratio.
BENCH_BASELINE ?=
# Installs the native wheel into the wheel test's virtualenv: left out where there is no cargo.
NATIVE_WHEEL_TEST := tests/integration/stack/test_wheel.py::test_the_wheel_copies_postgresql_without_and_with_the_accelerator
PEER_ARGS ?=

.PHONY: help venv native wheel services-up services-down test test-no-native demo lint bench docs \
	docs-build docs-reference bench-peer soak

help:
	@echo "make venv           create $(VENV) and pip install -e '.[dev]'"
	@echo "make services-up    start Kafka (plain :9092, secured :9190), the schema registry, PostgreSQL, MariaDB (127.0.0.1) and install Prometheus"
	@echo "make services-down  stop them"
	@echo "make test           venv + services-up + the Python-path run (POLLER_NATIVE=0), then pytest"
	@echo "make test-no-native PostgreSQL pipeline tests on the Python path (POLLER_NATIVE=0)"
	@echo "make native         build and install the optional Rust accelerator (needs cargo)"
	@echo "make wheel          dist/: the poller wheel, and the poller_native wheel where cargo exists"
	@echo "make demo           venv + Kafka + schema registry + poller demo"
	@echo "make lint           ruff check, ruff format --check, mypy"
	@echo "make bench          venv + services-up + python -m bench.run \$$(BENCH_ARGS), then the docs' tables (bench.page); BENCH_BASELINE=<git ref> adds a same-run baseline"
	@echo "make docs           serve the docs site on http://127.0.0.1:8000 (mkdocs serve)"
	@echo "make docs-build     mkdocs build --strict into site/ (also part of make test)"
	@echo "make docs-reference regenerate docs/reference/ and the exit-code table from the code"
	@echo "make bench-peer     only the Debezium side-by-side (bench/peer/), into bench/results/latest.json"
	@echo "make soak           the model-based interleaving test at length: SOAK_SCHEDULES (5000) from SOAK_SEED (1000)"

venv: $(STAMP) $(NATIVE_STAMP) $(MYSQL_STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(VENV)/bin/python ]; then \
	  $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || scripts/services deps; \
	  $(PYTHON) -m venv $(VENV); \
	fi
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

# The accelerator (native/, Rust + PyO3, one abi3 wheel for Python >= 3.11) is optional: without
# cargo the poller runs on the Python path. ~1 min on 2 cores the first time, seconds after.
$(NATIVE_STAMP): $(STAMP) $(NATIVE_SRC)
	@if command -v cargo >/dev/null 2>&1; then \
	  $(VENV)/bin/maturin build --release --quiet -m native/Cargo.toml -o native/target/wheels \
	  && $(VENV)/bin/pip install -q --force-reinstall --no-deps native/target/wheels/poller_native-*.whl \
	  && touch $(NATIVE_STAMP) \
	  || echo "the native extension did not build: the poller runs on the Python path (see above)"; \
	else \
	  echo "cargo not found: the native PostgreSQL path stays off (poller works without it)"; \
	fi

native: $(NATIVE_STAMP)

# mysqlclient (the optional C MySQL driver, the `mysql` extra) is built against libmariadb:
# `scripts/services mysqlclient-deps` installs Debian's libmariadb-dev where apt and root exist.
# Without it, mysql:// URLs take PyMySQL (the poller works without it).
$(MYSQL_STAMP): $(STAMP)
	@scripts/services mysqlclient-deps || echo "libmariadb-dev could not be installed (see above)"
	@if $(VENV)/bin/pip install -q -e '.[mysql]'; then \
	  touch $(MYSQL_STAMP); \
	else \
	  echo "mysqlclient did not build: mysql:// URLs use PyMySQL (poller works without it)"; \
	fi

# The wheels a user installs, into dist/: poller, and where cargo exists the poller_native
# accelerator (abi3, Python >= 3.11), which `pip install dist/*.whl` puts beside it.
wheel: venv
	rm -rf dist
	$(VENV)/bin/python -m build --wheel --outdir dist .
	@if command -v cargo >/dev/null 2>&1; then \
	  $(VENV)/bin/maturin build --release --quiet -m native/Cargo.toml -o dist; \
	else \
	  echo "cargo not found: dist/ holds the poller wheel only (it runs on the Python path)"; \
	fi
	@ls dist

services-up:
	scripts/services up

services-down:
	scripts/services down

# The docs build (mkdocs build --strict), the config-reference test and the Dockerfile lint
# are tests in tests/unit/docs and tests/unit/deploy, so pytest alone runs them too.
# The fallback run (extension off) first, then the whole suite (its summary closes the run).
test: venv services-up
	$(MAKE) test-no-native
	@skip=""; \
	if ! $(VENV)/bin/python -c 'import MySQLdb' 2>/dev/null; then \
	  echo "mysqlclient is not installed: MariaDB is tested on PyMySQL only"; \
	  skip="--ignore=tests/integration/source/test_mysql_drivers.py"; \
	fi; \
	if $(VENV)/bin/python -c 'import poller_native' 2>/dev/null; then \
	  $(VENV)/bin/pytest $$skip; \
	else \
	  echo "poller_native is not installed (no cargo): testing the Python path (POLLER_NATIVE=0)"; \
	  POLLER_NATIVE=0 $(VENV)/bin/pytest --ignore=tests/integration/source/test_native_differential.py \
	    --ignore=tests/integration/pipeline/test_native_run.py \
	    --ignore=tests/integration/verify/test_native_verify.py \
	    --ignore=tests/integration/pipeline/test_backfill_native.py \
	    --deselect $(NATIVE_WHEEL_TEST) $$skip; \
	fi

# The fallback: PostgreSQL's Python path, which the whole suite otherwise leaves to the native
# one where the extension is installed (the differential test compares both in the main run).
test-no-native: venv services-up
	POLLER_NATIVE=0 $(VENV)/bin/pytest -q tests/integration/source/test_pg_casters.py \
	  tests/integration/pipeline/test_values.py tests/integration/pipeline/test_entities.py \
	  tests/integration/pipeline/test_batching.py tests/unit/pipeline/test_native_off.py

demo: venv
	scripts/services up kafka registry
	$(VENV)/bin/poller demo

lint: venv
	$(VENV)/bin/ruff check poller tests bench
	$(VENV)/bin/ruff format --check poller tests bench
	$(VENV)/bin/mypy

# The model test (tests/model) with SOAK_SCHEDULES schedules in all, spread over its 6 cases
# (2 databases x 3 batching modes) and SOAK_JOBS shards run at once, seeds from SOAK_SEED;
# every failing seed is listed at the end (scripts/soak).
SOAK_SCHEDULES ?= 5000
SOAK_SEED ?= 1000
SOAK_JOBS ?= 4
soak: venv services-up
	SOAK_SCHEDULES=$(SOAK_SCHEDULES) SOAK_SEED=$(SOAK_SEED) SOAK_JOBS=$(SOAK_JOBS) VENV=$(VENV) scripts/soak

# The docs' performance tables are regenerated from the results file even when a measurement
# failed (they then list the failures); the exit status is the bench's.
bench: venv services-up
	@status=0; $(VENV)/bin/python -m bench.run $(BENCH_ARGS) \
	  $(if $(BENCH_BASELINE),--baseline $(BENCH_BASELINE)) || status=$$?; \
	  $(VENV)/bin/python -m bench.page || exit 1; exit $$status

docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

docs-build: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-reference: venv
	$(VENV)/bin/python -m poller.cli.reference

bench-peer: venv services-up
	$(VENV)/bin/python -m bench.run --peer debezium --peer-only $(PEER_ARGS)
	$(VENV)/bin/python -m bench.page
