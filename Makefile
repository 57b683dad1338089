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

run: migrate  ## serve on 127.0.0.1:5000; with no corp bound yet, beside a DingTalk sandbox corp
	CRM_SANDBOX=$${CRM_SANDBOX:-auto} $(BIN)/crm serve --host 127.0.0.1 --port 5000

lint: install
	$(BIN)/ruff check .

test: install  ## lint, then the whole suite (SQLite and PostgreSQL; browser tests drive Debian's chromium)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei) \
		|| echo "test: chromium missing (apt-get install chromium): browser tests will skip (fail under CI=true)" >&2
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: install  ## issue benchmarks (needs local PostgreSQL and wrk); see bench/README.md
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) \
		|| { echo "bench: wrk is required (apt-get install wrk)" >&2; exit 1; }
	$(BIN)/python bench/customer_list.py --customers 1000000 --followups 5000000
