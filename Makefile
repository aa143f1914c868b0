# mailsift: `make run` (set-up, train the default model if needed, serve API + SMTP filter)
#           `make test` (set-up, lint, type checks, every test)
SHELL := /bin/bash
# The venv's interpreter: Debian's python3.11 where there is one (built with PGO and LTO:
# scoring ran ~8% faster on it than on a plain source build such as pyenv's; bench/), else
# whatever python3 is first on PATH. PYTHON=... overrides.
PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || echo python3)
VENV := .venv
PY := $(VENV)/bin/python
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: setup sysdeps venv lint typecheck rules-cache test run bench clean

setup: sysdeps venv

sysdeps:
	@bash scripts/install-system-deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml mailsift/classifier/rules/_pcre.c mailsift/_htmldepth.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

lint: venv
	$(VENV)/bin/ruff check mailsift tests bench
	$(VENV)/bin/ruff format --check mailsift tests bench

typecheck: venv
	$(VENV)/bin/mypy

# Compile the configured rule set (stock SpamAssassin rules + ours) into var/cache/rules once:
# a cold Hyperscan compile takes 1-2 minutes; later loads take about a second.
rules-cache: venv
	$(PY) -c "from mailsift.config import load_settings; from mailsift.classifier.rules import load_ruleset; r = load_ruleset(load_settings()); print(f'rules cache ready: {len(r.names)} rules')"

test: setup lint typecheck rules-cache
	$(PY) -m pytest -q -p no:cacheprovider

run: setup rules-cache
	@bash scripts/run.sh

bench: setup
	$(PY) -m bench.run_all

clean:
	rm -rf var build .pytest_cache .mypy_cache .ruff_cache
