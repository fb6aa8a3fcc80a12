# `make run` and `make test` work on a fresh machine: each creates .venv and installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run lint test chaos bench bench-search clean

$(STAMP): pyproject.toml
	@echo "==> creating $(VENV) and installing Kassa (a minute on a fresh machine)"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar on --upgrade pip
	$(BIN)/pip install --progress-bar on -e '.[dev,test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/kassa dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The storefront's browser tests drive Debian's Chromium; installed once (CI runs as root).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@echo "==> installing Chromium for the storefront's browser tests"
	apt-get install -y chromium || (apt-get update && apt-get install -y chromium)

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q

chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m chaos tests/test_crashes.py

# The bench's taps come from wrk (Debian's), installed here only when it is missing.
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y wrk) || (sudo apt-get update -qq && sudo apt-get install -y wrk)
	$(BIN)/python -m bench.pay_now

bench-search: $(STAMP)
	$(BIN)/python -m bench.search

clean:
	rm -rf $(VENV) .kassa
