# brokerlink: every command a developer or CI needs. `make help` lists them.
# Each target sets up what it needs first: uv (if missing), the virtual environment, the locked dependencies.

SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
TOOLS := .tools
VENV := .venv
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
PY := $(VENV)/bin/python
PORT ?=

.PHONY: help demo test check lint format typecheck layers pytest install services services-stop serve bench specs clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}'

$(TOOLS)/bin/uv:
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set, nothing would ever cache the bytecode, and every
# process (each server the tests start, the demo) compiled litestar, sqlalchemy, ccxt... from source again.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

install: $(VENV)/.synced ## Create the virtual environment from uv.lock

demo: install ## Run the demo on http://127.0.0.1:8000 (PORT=9000 or BROKERLINK_PORT to change; Ctrl-C stops it)
	$(VENV)/bin/brokerlink demo $(if $(PORT),--port $(PORT))

serve: install ## Run the server with the settings in the environment (BROKERLINK_*)
	$(VENV)/bin/brokerlink serve

test: install lint typecheck layers pytest ## Run every check: ruff, mypy, import-linter, pytest

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

format: install ## Apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src tests bench
	$(VENV)/bin/ruff format src tests bench

typecheck: install ## mypy --strict on the package
	$(VENV)/bin/mypy

layers: install ## import-linter: the layer contract from DESIGN.md
	$(VENV)/bin/lint-imports

PYTEST_WORKERS ?= auto

pytest: install ## The test suite on every core (PYTEST_WORKERS=0 for one process; PostgreSQL/Redis tests run when BROKERLINK_TEST_*_URL are set)
	@$(PY) -m compileall -q src  # our own bytecode too (see --compile-bytecode above); only what changed
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

services: ## Start PostgreSQL and Redis on loopback for the contract tests; prints the exports
	@scripts/test-services.sh start

services-stop: ## Stop the test PostgreSQL and Redis
	@scripts/test-services.sh stop

bench: install ## Run the benchmarks in quick mode (see bench/README.md)
	@for b in $(filter-out bench/_%,$(wildcard bench/*.py)); do echo "== $$b"; $(PY) $$b --quick || exit 1; done

specs: install ## Write docs/openapi.json and docs/asyncapi.json from the code (commit them; a test checks they are current)
	$(VENV)/bin/brokerlink specs write

clean: ## Remove the virtual environment, caches and local state (var/)
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache .hypothesis var
