# Keyfob: `make run` serves the app in development, `make test` runs the whole suite.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run serve test test-sqlite test-postgres lint migrate bench screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamp files re-run the install whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

run: $(VENV)/.installed
	KEYFOB_ENV=$${KEYFOB_ENV:-development} $(BIN)/flask --app wsgi db upgrade
	KEYFOB_ENV=$${KEYFOB_ENV:-development} $(BIN)/flask --app wsgi run --host $(HOST) --port $(PORT)

# Production server: gunicorn with gunicorn.conf.py (KEYFOB_BIND, WEB_CONCURRENCY).
serve: $(VENV)/.installed
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

migrate: $(VENV)/.installed
	KEYFOB_ENV=$${KEYFOB_ENV:-development} $(BIN)/flask --app wsgi db upgrade

# Ratios under gunicorn (2 workers) on loopback, on SQLite and PostgreSQL, measured with wrk (apt-get install wrk);
# a report, not a test, about 10 minutes. BENCH_ARGS go to bench/run.py, e.g. BENCH_ARGS="--only sqlite".
# Results and how to read them: docs/performance.md.
bench: $(VENV)/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check app tests bench wsgi.py gunicorn.conf.py static/clients
	# Security lint: no high-severity finding in the application code.
	$(BIN)/bandit -q -lll -r app wsgi.py gunicorn.conf.py
	# Layers: the core imports no face and reads no request, and app/ has no import cycle (pyproject.toml).
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit/test_layers.py

# The whole suite twice: on SQLite, then on PostgreSQL. tests/pg_cluster.py starts a throwaway cluster with the
# machine's PostgreSQL 15 and removes it afterwards, or uses TEST_DATABASE_URL when given; without PostgreSQL it
# skips that run with one line (under CI=true it fails). PYTEST_ARGS go to both runs, e.g. PYTEST_ARGS="-x -k keys".
PYTEST = $(BIN)/python -m pytest $(PYTEST_ARGS)

test: $(VENV)/.installed-test lint
	env -u TEST_DATABASE_URL $(PYTEST)
	$(BIN)/python tests/pg_cluster.py $(PYTEST)

test-sqlite: $(VENV)/.installed-test
	env -u TEST_DATABASE_URL $(PYTEST)

test-postgres: $(VENV)/.installed-test
	$(BIN)/python tests/pg_cluster.py $(PYTEST)

# Refresh the README's pictures in docs/screenshots/ from the browser tests.
screenshots: $(VENV)/.installed-test
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest -q tests/browser

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .cache
