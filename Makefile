# Pigeon: `make run` starts the server, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test faults lint bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/pigeon serve

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The fault tests (tests/faults) at full size; `make test` runs them small.
faults: $(STAMP)
	PIGEON_FAULTS_FULL=1 $(BIN)/pytest tests/faults -v -s $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.harness $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
