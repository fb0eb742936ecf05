# Two commands do all set-up on a fresh machine with Python 3.11+ and make:
#   make serve   -> creates .venv, installs imagegen, serves on 127.0.0.1:8000
#   make test    -> creates .venv, installs imagegen with test extras, runs ruff, mypy, pytest
#   make test-fast -> the same without the end-to-end, fault and fuzz tests (see README, Testing)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: serve test test-fast lint typecheck pytest pytest-fast bench bench-peer clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# compileall: byte-code for imagegen's own modules, as a wheel install writes it; a shell with
# PYTHONDONTWRITEBYTECODE set would otherwise compile them at every start (~0.1 s).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,postgres]"
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/imagegen serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest -q

pytest-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e and not faults and not fuzz"

test: lint typecheck pytest

test-fast: lint typecheck pytest-fast

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m bench

# side by side with LiteLLM's proxy (bench/peer/README.md): its own venv and wrk under $$TMPDIR
bench-peer: $(STAMP)
	bench/peer/setup.sh
	VENV=$(VENV) bench/peer/compare.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
