# Two commands set up a fresh machine: `make run` runs the bot, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint typecheck unit bench redis-server clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --quiet -e .
	@touch $@

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --quiet -e '.[dev]'
	@touch $@ $(STAMP)

# redis-server and redis-cli (the tests build a Redis Cluster with it) must be on PATH: install
# Debian's packages when we are root, else say how.
redis-server:
	@{ command -v redis-server && command -v redis-cli; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing redis-server and redis-tools (Debian packages)..."; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; \
	  else \
	    echo "redis-server or redis-cli is missing: install them (sudo apt-get install redis-server redis-tools) and run make again." >&2; \
	    exit 1; \
	  fi; }

run: $(STAMP)
	@$(PY) -m bot.local_redis || { [ $$? = 2 ] && $(MAKE) --no-print-directory redis-server \
	  && $(PY) -m bot.local_redis; }
	$(PY) -m bot

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check --output-format concise .
	$(VENV)/bin/ruff format --check .

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

test: $(DEV_STAMP) redis-server lint typecheck
	$(VENV)/bin/pytest

bench: $(DEV_STAMP) redis-server
	$(PY) -m bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
