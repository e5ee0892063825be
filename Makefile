# The two commands of the README:
#   make console   install, create the database, load the demo shop, open the console
#   make test      install test dependencies, make sure Redis/PostgreSQL run, run every test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: console test install install-test lint bench

# pytest-xdist workers: twice the cores, since many tests mostly wait on the worker processes
# they start. Bytecode is cached (__pycache__, ignored by git) even where the environment says
# PYTHONDONTWRITEBYTECODE: the suite starts ~150 Python processes.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) * 2 )))

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
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(TEST_WORKERS)

bench: install-test
	scripts/ensure-services
	PYTHONPATH=. $(BIN)/python -m bench $(ARGS)
