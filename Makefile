# Every command the README and CI use. `make run` and `make test` work on a fresh machine:
# they create .venv, install the project, and install the reference stack on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run stack test lint typecheck check bench bench-quick clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "agent-memory-proxy needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,load]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/agent-memory-proxy up

stack: $(STAMP)
	$(BIN)/python -m proxy.localstack all

test: stack
	$(BIN)/python -m pytest --durations=15

lint: $(STAMP)
	$(BIN)/ruff check proxy tests load

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

bench: $(STAMP)
	$(BIN)/python -m load.bench

bench-quick: $(STAMP)
	$(BIN)/python -m load.bench --quick
