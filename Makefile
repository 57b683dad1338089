# The two commands in the README: `make run` and `make test`. Everything else is a step they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install migrate lint bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## virtual environment with the app and its test tools

migrate: install  ## apply migrations to the configured database (embedded: instance/crm.sqlite3)
	$(BIN)/crm db upgrade

run: migrate  ## serve on 127.0.0.1:5000
	$(BIN)/crm serve --host 127.0.0.1 --port 5000

lint: install
	$(BIN)/ruff check .

test: install  ## lint, then the whole suite (SQLite and PostgreSQL)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: install  ## issue benchmarks; see bench/README.md
	$(BIN)/python bench/customer_list.py
