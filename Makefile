# Two commands do everything: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck test-local test-embedded clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python testproject/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests testproject
	$(BIN)/ruff format --check src tests testproject

typecheck: $(STAMP)
	$(BIN)/mypy

# psycopg 3 on the configured or local server (PostgreSQL 15 on these machines; embedded
# when none answers), then psycopg2 on the embedded PostgreSQL 18.
test-local: $(STAMP)
	DPA_DRIVER=psycopg $(BIN)/pytest

test-embedded: $(STAMP)
	DPA_DRIVER=psycopg2 DPA_EMBEDDED=1 $(BIN)/pytest

test: lint typecheck test-local test-embedded

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
