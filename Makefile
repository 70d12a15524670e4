# personaflow: two commands. `make demo` installs and runs the nightly pipeline end to end;
# `make test` installs and runs the test suite. Everything else here is a helper for those two.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU torch wheel lies in the folder that pip's own config names; uv does not read pip's
# config, so hand it over at install time instead of hard-coding a machine path.
FIND_LINKS := $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
UV_FLAGS := $(if $(FIND_LINKS),--find-links $(FIND_LINKS))
export UV_COMPILE_BYTECODE := 1

.PHONY: install demo test lint bench bench-pipeline lock clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q uv==0.13.9
	$(BIN)/uv pip install --python $(BIN)/python $(UV_FLAGS) -r requirements.lock
	$(BIN)/uv pip install --python $(BIN)/python $(UV_FLAGS) --no-deps -e .
	touch $@

# Re-resolve the pinned set (needs the registry); commit the result.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 $(UV_FLAGS) \
		--no-emit-find-links -o requirements.lock

demo: install
	$(BIN)/personaflow demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

bench: bench-pipeline

bench-pipeline: install
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf .personaflow
