# The README's two commands: `make demo` and `make test`. Both run as root.
VENV := .venv
PY := $(VENV)/bin/python
NETPLANE := $(VENV)/bin/netplane

.PHONY: setup demo test lint unit integration e2e

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m netplane.lab.demo

lint: setup
	$(VENV)/bin/ruff check netplane tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

unit: setup
	$(VENV)/bin/pytest -q tests/unit

integration: setup
	$(VENV)/bin/pytest -q tests/integration

e2e: setup
	$(VENV)/bin/pytest -q tests/e2e

test: lint
	$(VENV)/bin/pytest -q -p no:cacheprovider tests
