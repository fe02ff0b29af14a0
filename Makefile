# Everything goes through the project venv; `make venv` (re)installs only when
# pyproject.toml changed since the last install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv run test lint bench chaos soak clean asyncapi chromium

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: venv
	$(BIN)/runctl dev

# The whole suite on one Redis, then a representative part of it on a local Redis Cluster
# (3 masters): the lifecycle, revert, queries, API, rolling restart, runctl flows, and
# the chaos driver (its own cluster, a replica per master: masters failed over).
CLUSTER_TESTS = tests/integration/test_worker_inprocess.py tests/integration/test_queries.py \
	tests/integration/test_revert_conflicts.py tests/integration/test_api_http.py \
	tests/integration/test_lease_loss.py tests/integration/test_command_batches.py \
	tests/integration/test_api_events.py tests/integration/test_rolling_restart.py \
	tests/integration/test_api_token_cache.py \
	tests/e2e/test_runctl_flows.py tests/integration/test_network_partitions.py \
	tests/integration/test_reservations.py tests/e2e/test_chaos.py
# Chunks, leases and revert again with the network in 4 partitions on one Redis (chunks
# spanning partitions: the two-phase commit); the cluster run uses 16.
PARTITION_TESTS = tests/integration/test_guarantees.py tests/integration/test_revert_property.py \
	tests/integration/test_lease_loss.py tests/integration/test_revert_conflicts.py \
	tests/integration/test_worker_inprocess.py
# The chaos phase of the chaos driver (tests/e2e/test_chaos.py), in seconds: short in
# `make test` (so CI: about a minute each on one Redis and on the cluster), longer in
# `make chaos`. Either can be set: `make chaos CHAOS_SECONDS=300`.
TEST_CHAOS_SECONDS ?= 30
CHAOS_SECONDS ?= 90
test: venv chromium
	CHAOS_SECONDS=$(TEST_CHAOS_SECONDS) $(BIN)/pytest -q
	CHAOS_SECONDS=$(TEST_CHAOS_SECONDS) $(BIN)/pytest -q --redis=cluster $(CLUSTER_TESTS)
	RUNSTREAM_TEST_PARTITIONS=4 $(BIN)/pytest -q $(PARTITION_TESTS)

# The admin UI's browser tests drive Debian's chromium (Playwright cannot download its own
# here): installed with apt when missing and possible; else those tests skip, saying why.
chromium:
	@if [ -z "$$RUNSTREAM_CHROMIUM" ] && ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	      >/dev/null) || echo "WARNING: chromium could not be installed: browser tests SKIP"; \
	  else \
	    echo "WARNING: no chromium, and apt-get needs root: the browser tests will SKIP"; \
	  fi; \
	fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/hadolint deploy/Dockerfile
	$(BIN)/kubernetes-validate --strict --quiet deploy/k8s/*/*.yaml
	$(BIN)/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml

# BENCH=engine, BENCH=query, BENCH=ui, BENCH=api or BENCH=scale runs one section alone
# (query: 100,000 runs, about 3 min; ui: the admin UI's runs page with 100,000 runs and live
# updates in chromium; api: the HTTP API driven by wrk, which it needs: apt-get install wrk;
# scale: 1, 2 and 4 workers on one Redis and on a local 3-master cluster, and the
# coordination cost of 1,000 active runs, about 6 min; py-spy, if installed, says where
# that goes).
BENCH ?= all
bench: venv
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = engine ]; then $(BIN)/python bench/run.py; fi
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = query ]; then $(BIN)/python bench/query_bench.py; fi
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = ui ]; then $(MAKE) --no-print-directory chromium; \
	  $(BIN)/python bench/ui_bench.py; fi
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = api ]; then $(BIN)/python bench/api_bench.py; fi
	@if [ "$(BENCH)" = all ] || [ "$(BENCH)" = scale ]; then $(BIN)/python bench/scale.py; fi

# The AsyncAPI document of the message interface (checked in; a test keeps it up to date).
asyncapi: venv
	$(BIN)/python -m runstream.asyncapi > docs/asyncapi.json

soak: venv
	$(BIN)/python bench/soak.py

# On one Redis (crashed and restarted), then on a local cluster (masters failed over);
# the long form of what `make test` runs (CHAOS_SECONDS, above).
chaos: venv
	CHAOS_SECONDS=$(CHAOS_SECONDS) $(BIN)/pytest -q -s -m chaos tests/e2e
	CHAOS_SECONDS=$(CHAOS_SECONDS) $(BIN)/pytest -q -s -m chaos --redis=cluster tests/e2e

# Keeps .runstream/ (the data of `make run`): remove it by hand to start afresh.
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist
	find . -path ./.git -prune -o -name __pycache__ -type d -exec rm -rf {} +
