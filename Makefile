# Pigeon: `make run` starts the server, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: running needs only Pigeon's own dependencies; the dev tools
# (pytest, schemathesis, moto, mypy, ...) take minutes and come with `make test`.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test faults lint bench install clean

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/pigeon serve

test: $(DEV_STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The fault tests (tests/faults) at full size; `make test` runs them small.
faults: $(DEV_STAMP)
	PIGEON_FAULTS_FULL=1 $(BIN)/pytest tests/faults -v -s $(PYTEST_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python -m bench.harness $(BENCH_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
