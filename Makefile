# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# the official AsyncAPI parser (npm) that tests/integration/test_asyncapi.py runs
NODE_DIR   := tests/asyncapi
NODE_STAMP := $(NODE_DIR)/node_modules/.installed-$(shell cksum < $(NODE_DIR)/package-lock.json | cut -d' ' -f1)

.PHONY: demo test lint typecheck audit docs unit bench chaos clean chromium \
	example-create-order example-parking

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c 'import sys; assert sys.version_info >= (3, 11), "sagakit needs Python >= 3.11"'
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

$(NODE_STAMP): $(NODE_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the AsyncAPI parser tests skip (and fail when CI=true)"; fi

# Debian's Chromium for tests/e2e/test_dashboard_browser.py (Playwright never
# downloads a browser): installed once, as root (CI runs as root); otherwise
# the browser test skips, and fails when CI=true.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && apt-get install -y -qq chromium; \
		else echo "chromium not found and not root: the browser test skips (and fails when CI=true)"; fi; }

demo: $(STAMP)
	$(BIN)/sagakit demo

# Each example end to end: start its services, run its scenarios, print the
# outcome, stop everything (needs PostgreSQL and RabbitMQ; docs/how-to/examples.md)
example-create-order: $(STAMP)
	$(BIN)/python -m examples.runner create-order

example-parking: $(STAMP)
	$(BIN)/python -m examples.runner parking

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks examples docs/ext
	$(BIN)/ruff check src tests benchmarks examples docs/ext

typecheck: $(STAMP)
	$(BIN)/mypy

# pip-audit of the installed dependencies: a known vulnerability fails; what
# it could not look up (no advisory service reachable) is a warning, an error
# with SAGAKIT_AUDIT=required (.ci/audit.py, SECURITY.md)
audit: $(STAMP)
	$(BIN)/python .ci/audit.py

# the documentation site (mkdocs.yml, docs/): any warning fails the build,
# a broken link or a docstring mkdocstrings cannot read included; the pages'
# code blocks run in tests/e2e/test_docs.py
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

# the suite on TEST_WORKERS processes (pytest-xdist); the tests that stop or
# crash a server do it to private servers of their own (tests/private_services.py),
# all in one process (xdist_group), so the pair starts once. Three on two
# cores: many tests wait on the processes, servers and brokers they drive
# (on a machine where two took 762-778 s, three took 703 s)
TEST_WORKERS ?= 3
# compiled first: the tests start hundreds of Python processes, and where
# PYTHONDONTWRITEBYTECODE is set none of them writes its bytecode, so each
# compiled the modules it imports again (0.3 s of CPU for a worker's)
test: lint typecheck audit docs $(NODE_STAMP) chromium
	$(BIN)/python -m compileall -q src tests examples benchmarks >/dev/null
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

bench: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[bench]'
	$(BIN)/python benchmarks/sqlite_throughput.py
	$(BIN)/python benchmarks/postgres_throughput.py
	$(BIN)/python benchmarks/mysql_throughput.py
	$(BIN)/python benchmarks/remote_throughput.py

# the long chaos runs; `make test` runs shorter ones (1,000 sagas, 8 kills;
# 120 sagas on hot lock keys, 4 kills; the Jepsen-style set workload: 20
# sagas and one event per nemesis, no PostgreSQL crash). Records:
# artifacts/jepsen/*.json
chaos: $(STAMP)
	CHAOS_SAGAS=$${CHAOS_SAGAS:-4000} CHAOS_KILLS=$${CHAOS_KILLS:-24} \
	LOCK_CHAOS_SAGAS=$${LOCK_CHAOS_SAGAS:-1000} LOCK_CHAOS_KILLS=$${LOCK_CHAOS_KILLS:-12} \
	JEPSEN_SAGAS=$${JEPSEN_SAGAS:-2000} JEPSEN_EVENTS=$${JEPSEN_EVENTS:-12} \
	JEPSEN_NEMESES=$${JEPSEN_NEMESES:-kill,pause,partition,pg-crash} \
	JEPSEN_DEADLINE=$${JEPSEN_DEADLINE:-1200} \
	$(BIN)/pytest tests/chaos -m chaos -p no:cacheprovider -s --timeout 3600

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache .hypothesis $(NODE_DIR)/node_modules
