# segaudit: `make demo` runs an audit of the committed sample; `make test` runs the tests.
# Every target creates .venv when missing and installs the locked requirements into it.

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
DEMO := build/demo
SAMPLE := data/sample/hc18

.PHONY: install demo test bench bench-quick lint lock clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	@touch $@

demo: $(STAMP)
	@rm -rf $(DEMO)
	$(BIN)/segaudit corrupt --masks $(SAMPLE)/masks --out $(DEMO)/noisy_masks \
		--truth $(DEMO)/noise_truth.csv --fraction 0.4 --protocol mixed --seed 0
	$(BIN)/segaudit audit --images $(SAMPLE)/images --masks $(DEMO)/noisy_masks \
		--out $(DEMO)/audit --seed 0
	@echo
	$(BIN)/segaudit evaluate --audit $(DEMO)/audit --truth $(DEMO)/noise_truth.csv \
		--true-masks $(SAMPLE)/masks --given-masks $(DEMO)/noisy_masks

test: $(STAMP)
	scripts/install-test-services.sh
	$(BIN)/python -m pytest -q

# The standard matrix of docs/benchmarks.md (reads ../shared/data; about an hour on 2 CPU cores).
bench: $(STAMP)
	$(BIN)/python -m bench.matrix

# A few minutes: the committed hc18 sample, mixed noise, one seed.
bench-quick: $(STAMP)
	$(BIN)/python -m bench.matrix --quick

lint: $(STAMP)
	$(BIN)/ruff check models bench cli tests
	$(BIN)/ruff format --check models bench cli tests

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
