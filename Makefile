# The two commands: `make run` and `make test`. Everything else is a helper of theirs.
PYTHON ?= python3
# bash: pipefail keeps the test runs' exit status through their prefixing pipes.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=
# The offline vulnerability data beside the checkout: `make run` gives the server these feeds instead of the
# osv.dev downloads (a DOCKYARD_VULNDB_SOURCES already set wins).
VULNDATA ?= $(firstword $(wildcard $(abspath ../shared/vulndata) /work/shared/vulndata) $(abspath ../shared/vulndata))
LOCAL_VULNDB_SOURCES := $(VULNDATA)/debian-osv,$(VULNDATA)/alpine-secdb,$(VULNDATA)/pypa-advisory-database,$(VULNDATA)/go-vulndb,$(VULNDATA)/nodejs-security-wg,$(VULNDATA)/nvd-sample

.PHONY: run test test-sqlite test-postgres test-sqlite-tagged test-postgres-tagged lint deps system-deps bench bench-scan clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

deps: $(STAMP)

## Start dockyard on the embedded defaults: SQLite and blobs under ./var, http://127.0.0.1:5000
## DOCKYARD_DEMO=1 make run seeds a demo store first (publishers, products, customers; once).
run: deps
	export DOCKYARD_VULNDB_SOURCES="$${DOCKYARD_VULNDB_SOURCES:-$(LOCAL_VULNDB_SOURCES)}"; \
	if [ "$${DOCKYARD_DEMO:-0}" = 1 ]; then $(BIN)/dockyard demo; fi; \
	$(BIN)/dockyard serve

# Debian's packages, then axe-core from npm (the browser tests inject it to check pages' accessibility).
system-deps:
	scripts/install-test-deps.sh
	[ -f .test-tools/node_modules/axe-core/axe.min.js ] || npm install --no-audit --no-fund --silent --prefix .test-tools axe-core@4.14.1

lint: deps
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

## Install everything the tests need, then run the whole suite on SQLite and on PostgreSQL.
# The two runs go side by side (each waits on servers, clients and databases much of the time), each line
# prefixed with its database; `make test-sqlite` or `make test-postgres` runs one alone. DOCKYARD_TEST_PAIRED=1
# shares the tests that reach no database out between them (tests/conftest.py, ONCE_IN_THE_POSTGRESQL_RUN),
# so that each runs once and both end at about the same time.
test: deps system-deps lint
	$(MAKE) --no-print-directory -j2 DOCKYARD_TEST_PAIRED=1 test-sqlite-tagged test-postgres-tagged

# The real vulnerability data is required under `make test`: its tests fail rather than skip without it.
# So are the system tools `system-deps` installs: under DOCKYARD_REQUIRE_SYSTEM_DEPS=1 any skip is a failure.
TEST_ENV := DOCKYARD_VULNDATA=$(VULNDATA) DOCKYARD_REQUIRE_VULNDATA=1 DOCKYARD_REQUIRE_SYSTEM_DEPS=1 \
    DOCKYARD_TEST_PAIRED=$(DOCKYARD_TEST_PAIRED)

test-sqlite: deps
	$(TEST_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: deps
	$(TEST_ENV) DOCKYARD_TEST_DATABASE_URL=$$(scripts/start-postgres.sh) $(BIN)/python -m pytest $(PYTEST_ARGS)

# Each run with its own pytest directory, its output prefixed, and its exit status kept through the pipe.
test-sqlite-tagged: deps
	set -o pipefail; $(TEST_ENV) $(BIN)/python -m pytest --basetemp="$${TMPDIR:-/tmp}/dockyard-pytest-sqlite" \
	    $(PYTEST_ARGS) 2>&1 | sed -u 's/^/[sqlite] /'

test-postgres-tagged: deps
	set -o pipefail; url=$$(scripts/start-postgres.sh) && $(TEST_ENV) DOCKYARD_TEST_DATABASE_URL=$$url \
	    $(BIN)/python -m pytest --basetemp="$${TMPDIR:-/tmp}/dockyard-pytest-postgres" $(PYTEST_ARGS) 2>&1 \
	    | sed -u 's/^/[postgres] /'

bench: deps
	$(BIN)/python benchmarks/registry_bench.py

bench-scan: deps
	$(BIN)/pip install -q -e '.[test,bench]'  # Trivy, run side by side
	$(BIN)/python benchmarks/scan_bench.py

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
