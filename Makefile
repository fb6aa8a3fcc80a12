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

# Debian's packages, installed once when missing (CI runs as root): Chromium for the storefront's
# browser tests, wrk for the bench's taps.
CHROMIUM := /usr/bin/chromium
WRK := /usr/bin/wrk
apt_install = apt-get install -y $(1) || (apt-get update && apt-get install -y $(1))

$(CHROMIUM):
	@echo "==> installing Chromium for the storefront's browser tests"
	$(call apt_install,chromium)

$(WRK):
	@echo "==> installing wrk for the bench's taps"
	$(call apt_install,wrk)

test: $(STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest -q

chaos: $(STAMP)
	$(BIN)/python -m pytest -q -m chaos tests/test_crashes.py

bench: $(STAMP) $(WRK)
	$(BIN)/python -m bench.pay_now

bench-search: $(STAMP)
	$(BIN)/python -m bench.search

clean:
	rm -rf $(VENV) .kassa
