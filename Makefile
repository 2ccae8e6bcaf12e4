# segaudit: `make demo` audits the committed sample through the service; `make test` runs the tests.
# Every target creates .venv when missing and installs the locked requirements into it.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
DEMO := build/demo
SAMPLE := data/sample/hc18

.PHONY: install demo test bench bench-api bench-quick lint lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	@touch $@

# The sample through the service in embedded mode (scripts/demo.sh): serve --embedded, submit
# --wait, evaluate. DEMO_AUDIT_ARGS="--epochs 4 --size 64" makes a quick check of the plumbing.
demo: $(STAMP)
	BIN=$(BIN) DEMO=$(DEMO) SAMPLE=$(SAMPLE) scripts/demo.sh

test: $(STAMP)
	scripts/install-test-services.sh
	$(BIN)/python -m pytest -q

# The standard matrix of docs/benchmarks.md (reads ../shared/data; about 100 minutes on 2 CPU cores),
# after the API's load benchmark.
bench: $(STAMP) bench-api
	$(BIN)/python -m bench.matrix

# The case listing under load (bench/api_load.py, about a minute): a PostgreSQL database of its own
# on SEGAUDIT_TEST_POSTGRES (default postgres@127.0.0.1:5432), 10,000 results, `segaudit serve
# --workers $(API_WORKERS)`, 50 clients for 20 s; prints requests/s, p50/p95/p99 and errors.
API_WORKERS ?= 2
bench-api: $(STAMP)
	$(BIN)/python -m bench.api_load --workers $(API_WORKERS) --json build/api_load.json

# A few minutes: the committed hc18 sample, mixed noise, one seed.
bench-quick: $(STAMP)
	$(BIN)/python -m bench.matrix --quick

# ruff (style, imports, stray prints, unused arguments) and mypy (strict on imaging/, models/,
# app/, worker/; pyproject.toml). CI runs it before the tests.
LINTED := imaging models bench cli app worker migrations tests

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

# Re-pin every requirement after changing pyproject.toml (then commit requirements.lock).
lock:
	rm -rf build/lock-venv
	$(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/python -m pip --disable-pip-version-check --quiet install -e ".[dev,bench]"
	{ echo '# Exact versions installed by `make` (regenerate with `make lock`). torch stays at 2.13.0:'; \
	  echo '# a looser pin lets pip pick a newer, multi-GB CUDA build.'; \
	  build/lock-venv/bin/python -m pip freeze --all --exclude-editable | grep -v '^pip==' \
	    | sed 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements.lock
	rm -rf build/lock-venv

clean:
	rm -rf $(VENV) build .pytest_cache .ruff_cache
