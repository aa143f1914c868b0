# mailsift: `make run` (set-up, train the default model if needed, serve API + SMTP filter)
#           `make test` (set-up, lint, type checks, every test)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: setup sysdeps venv lint typecheck test test-fast run train bench clean

setup: sysdeps venv

sysdeps:
	@bash scripts/install-system-deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

lint: venv
	$(VENV)/bin/ruff check mailsift tests bench
	$(VENV)/bin/ruff format --check mailsift tests bench

typecheck: venv
	$(VENV)/bin/mypy

test: setup lint typecheck
	$(PY) -m pytest -q -p no:cacheprovider

run: setup
	@bash scripts/run.sh

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf var build .pytest_cache .mypy_cache .ruff_cache
