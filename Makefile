# The two commands of the README:
#   make console   install, create the database, load the demo shop, open the console
#   make test      install test dependencies, make sure Redis/PostgreSQL run, run every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: console test install install-test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'

console: install
	$(BIN)/kolaq-console db upgrade
	$(BIN)/kolaq-console demo
	$(BIN)/kolaq-console --worker

test: install-test
	scripts/ensure-services
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n auto

bench: install-test
	scripts/ensure-services
	PYTHONPATH=. $(BIN)/python -m bench $(ARGS)
