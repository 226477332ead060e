# HealthLedger. `make run` starts everything; `make test` runs the whole suite.
# Both install what is missing first: a .venv from requirements.txt, node_modules from package-lock.json.

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON3 ?= python3
APPS := accounts ledger audit records consent diagnostics research api portal
DOMAIN_APPS := healthledger $(APPS)
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test chaos bench lint

help:
	@echo "make run    start the web server, a Celery worker and beat, Redis and anvil when needed; seed the demo"
	@echo "make test   migrations check, import contracts, the whole pytest suite (PYTEST_ARGS=... to narrow it)"
	@echo "make chaos  break workers, web nodes, Redis, PostgreSQL links, the chain and the log on purpose; chaos/results.json"
	@echo "make bench  the benchmarks (BENCH=name to pick some); figures in bench/results.json"
	@echo "make lint   ruff check, ruff format --check, mypy on the domain apps, import-linter"

install: $(VENV)/.installed node_modules/.package-lock.json

$(PY):
	$(PYTHON3) -m venv $(VENV)

# The stamp is newer than requirements.txt once its pins are installed.
$(VENV)/.installed: requirements.txt | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

# npm writes node_modules/.package-lock.json on every install: older than the lockfile means stale.
# `npm install`, not `npm ci`: anvil's per-platform optional packages for other systems cannot be
# resolved from every registry, so the lockfile cannot list them and `npm ci` refuses it as out of sync.
# With a lockfile present `npm install` still installs exactly its pinned versions.
node_modules/.package-lock.json: package-lock.json
	npm install --no-audit --no-fund
	touch $@

run: install
	$(PY) scripts/run.py

# Apps are named so that one with models but no migrations package yet is caught too.
# pytest exits 5 when it collected nothing: say so loudly and fail, never pass quietly.
test: install
	$(PY) manage.py makemigrations --check --dry-run $(APPS)
	$(VENV)/bin/lint-imports
	@$(VENV)/bin/pytest $(PYTEST_ARGS); code=$$?; \
	if [ $$code -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$code

# Faults against real processes (Redis, a Celery worker, anvil, PostgreSQL); one table, chaos/results.json.
# CHAOS_SHORT=1 is the shortened run CI makes.
chaos: install
	$(VENV)/bin/pytest chaos -q $(CHAOS_ARGS)

# The API figures need wrk (Debian's package); as root it is installed when missing, as .ci/run does Chromium.
bench: install
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1 \
		|| { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null 2>&1; } \
		|| echo "make bench: wrk is missing and could not be installed (apt-get install -y wrk); the API figures are skipped"
	$(PY) -m bench $(BENCH)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy $(DOMAIN_APPS)
	$(VENV)/bin/lint-imports
