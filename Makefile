# Pigeon: `make run` starts the server, `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two stamps: running needs only Pigeon's own dependencies; the dev tools
# (pytest, schemathesis, moto, mypy, ...) take minutes and come with `make test`.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

# The web client (web/) is built into the package (src/pigeon/web/static) when its
# sources changed; the build is committed, so a machine without node serves it as is.
WEB_SOURCES := $(shell find web/src -type f 2>/dev/null) web/index.html web/package.json \
	web/package-lock.json web/vite.config.ts web/tsconfig.json
WEB_DEPS := web/node_modules/.installed
WEB_BUILD := src/pigeon/web/static/index.html
WEB_URL = http://$${PIGEON_HOST:-127.0.0.1}:$${PIGEON_PORT:-8080}/

.PHONY: run test faults lint bench install clean web web-test

$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

install: $(DEV_STAMP)

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $(WEB_DEPS)

$(WEB_BUILD): $(WEB_SOURCES)
	@if command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory $(WEB_DEPS) && cd web && npm run build; \
	else \
		echo "npm not found: serving the committed build of the web client"; \
	fi
	touch $(WEB_BUILD)

web: $(WEB_BUILD)

# The web client's unit tests (Vitest: its state and storage code).
web-test: $(WEB_BUILD) $(WEB_DEPS)
	cd web && npm test

run: $(RUN_STAMP) $(WEB_BUILD)
	@echo "Open the web client at $(WEB_URL)"
	$(BIN)/pigeon serve

test: $(DEV_STAMP) web-test
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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache web/node_modules
