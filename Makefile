# Two commands do everything: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: pgbouncer chromium screenshots compat compat-deps demo test lane-django42 lint typecheck test-local test-embedded test-django42 bench bench-quick clean

$(STAMP): pyproject.toml
	@echo "Setting up $(VENV): Django, both PostgreSQL drivers, an embedded PostgreSQL 18 and the test tools (first run only, a minute or two)..."
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python testproject/demo.py

lint: $(STAMP)
	$(BIN)/ruff check src tests testproject bench compat
	$(BIN)/ruff format --check src tests testproject bench compat

typecheck: $(STAMP)
	$(BIN)/mypy

# psycopg 3 on the configured or local server (PostgreSQL 15 on these machines; embedded
# when none answers), then psycopg2 on the embedded PostgreSQL 18.
test-local: $(STAMP)
	DPA_DRIVER=psycopg $(BIN)/pytest $(PYTEST_LANE_ARGS)

test-embedded: $(STAMP)
	DPA_DRIVER=psycopg2 DPA_EMBEDDED=1 $(BIN)/pytest $(PYTEST_LANE_ARGS)

# The other supported Django LTS, in its own virtualenv: psycopg2, the driver most of its
# projects run, on an embedded PostgreSQL 18 of its own (so it can run beside the lane on
# the local server). Every driver and server is covered under the newest Django above; here
# only what Django runs (the engine-only tests, marked `engine`, run there twice already).
VENV42 := .venv-django42
STAMP42 := $(VENV42)/.installed

$(STAMP42): pyproject.toml
	test -x $(VENV42)/bin/python || $(PYTHON) -m venv $(VENV42)
	$(VENV42)/bin/python -m pip install --quiet --upgrade pip
	$(VENV42)/bin/python -m pip install --quiet -e '.[test]' 'Django>=4.2,<5.0'
	touch $(STAMP42)

test-django42: $(STAMP42)
	DPA_DRIVER=psycopg2 DPA_EMBEDDED=1 $(VENV42)/bin/pytest -m "not engine" $(PYTEST_LANE_ARGS)

# The context tests start Debian's PgBouncer themselves; install it when it is missing.
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || \
		(apt-get install -y -q pgbouncer >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q pgbouncer >/dev/null))

# The admin's browser test drives Debian's Chromium through Playwright (no browser download).
chromium:
	@test -x /usr/bin/chromium || \
		(apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null))

# Regenerates the pictures of docs/admin.md from the browser test.
screenshots: $(STAMP) chromium
	DPA_SCREENSHOTS=docs/img DPA_DRIVER=psycopg $(BIN)/pytest -q tests/test_admin_browser.py

# The suite in three lanes at once, one per PostgreSQL server, so `make test` takes the time
# of the longest lane: the configured or local server (Django 5.2 with psycopg 3), an
# embedded PostgreSQL 18 of its own (Django 5.2 with psycopg2) and another (Django 4.2 with
# psycopg2, then 1.0.4's own suite on the configured or local server, in a database of its
# own: the shortest lane takes it, a minute and more off the longest). Run one after the
# other, the two embedded runs left one of the two cores idle for their last minutes once
# the local lane was done. The lanes share no database, role or port: the embedded lanes' PgBouncers take the two ports after
# DPA_PGBOUNCER_PORT (6439 by default). Their output goes to .test-embedded.log and
# .test-django42.log, printed when every lane is done; `make test` fails if any does.
PGBOUNCER_PORT ?= $(or $(DPA_PGBOUNCER_PORT),6439)
# Each lane lists its slowest tests, so the next change to the lanes starts from figures.
PYTEST_LANE_ARGS ?= --durations=15

test: lint typecheck pgbouncer chromium $(STAMP) $(STAMP42) compat-deps
	@echo "make test: the local lane prints below; the embedded lanes write .test-embedded.log and .test-django42.log"
	@DPA_PGBOUNCER_PORT=$$(($(PGBOUNCER_PORT) + 1)) $(MAKE) --no-print-directory test-embedded \
		> .test-embedded.log 2>&1 & embedded_lane=$$!; \
	DPA_PGBOUNCER_PORT=$$(($(PGBOUNCER_PORT) + 2)) $(MAKE) --no-print-directory lane-django42 \
		> .test-django42.log 2>&1 & django42_lane=$$!; \
	DPA_PGBOUNCER_PORT=$(PGBOUNCER_PORT) $(MAKE) --no-print-directory test-local; local=$$?; \
	wait $$embedded_lane; embedded=$$?; wait $$django42_lane; django42=$$?; \
	echo "======== embedded lane (.test-embedded.log) ========"; cat .test-embedded.log; \
	echo "======== Django 4.2 lane (.test-django42.log) ========"; cat .test-django42.log; \
	echo "make test: local lane exit $$local, embedded lane exit $$embedded, Django 4.2 lane exit $$django42"; \
	test $$local -eq 0 && test $$embedded -eq 0 && test $$django42 -eq 0

lane-django42: test-django42 compat

# 1.0.4's own test suite, from its sdist on PyPI, unmodified, against this package.
compat-deps: $(STAMP)
	@$(BIN)/python -c "import requests" 2>/dev/null || $(BIN)/python -m pip install --quiet requests

compat: compat-deps
	$(BIN)/python compat/run104.py

# Benchmarks against an unaudited baseline, interleaved rounds; see docs/performance.md.
# BENCH_ARGS="--synchronous-commit on" measures with durable commits.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run --output bench/results-full.md $(BENCH_ARGS)

bench-quick: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run --quick --output bench/results-quick.md $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(VENV42) .pytest_cache .mypy_cache .ruff_cache .hypothesis
