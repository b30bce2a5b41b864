# Two commands: `make run` starts the whole system, `make test` runs the tests.
# Both bootstrap .venv (again only when pyproject.toml or the lock file changes) and the embedded
# servers. The versions come from requirements-dev.lock (pinned, with hashes); `make lock`
# refreshes both lock files after a change to the dependencies in pyproject.toml.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
LOCK_DEV  := requirements-dev.lock
LOCK_PROD := requirements.lock

.PHONY: run test test-fast fuzz lint typecheck lock locust loadtest bench bench-volume drill stack-start stack-stop stack-status clean

$(STAMP): pyproject.toml $(LOCK_DEV)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "[make] installing the locked dependencies and the project into $(VENV)"
	@$(PY) -m pip install --quiet --require-hashes -r $(LOCK_DEV)
	@$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# Re-resolve the dependencies of pyproject.toml: requirements-dev.lock (the project with its
# `dev` and `devstack` extras: make, CI) and requirements.lock (the application alone: the
# Docker image, at the same versions). Keeps every pin that still fits unless UPGRADE=1.
UV_COMPILE = $(VENV)/bin/uv pip compile --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock" $(if $(UPGRADE),--upgrade)
lock: $(STAMP)
	@$(UV_COMPILE) pyproject.toml --extra dev --extra devstack -o $(LOCK_DEV)
	@$(UV_COMPILE) pyproject.toml -c $(LOCK_DEV) -o $(LOCK_PROD)
	@echo "[make] wrote $(LOCK_DEV) and $(LOCK_PROD)"

run: $(STAMP)
	@$(PY) -m config.devstack run

# Everything (what CI runs).
test: $(STAMP)
	@$(PY) -m pytest $(ARGS)

# Everything but the tests marked `slow` (benchmark driver, Locust, worker crash, faults, ...).
test-fast: $(STAMP)
	@$(PY) -m pytest -m "not slow" $(ARGS)

# Schemathesis with every check and phase against a fresh gunicorn on the test database, in both
# anonymous-read modes, FUZZ_EXAMPLES test cases per operation and phase; prints the report.
FUZZ_EXAMPLES ?= 25
fuzz: $(STAMP)
	@FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest tests/contract/test_fuzz.py -s $(ARGS)

lint: $(STAMP)
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

typecheck: $(STAMP)
	@$(VENV)/bin/mypy fulfillment config

LOCUST_HOST ?= http://127.0.0.1:$(or $(PORT),8000)
LOCUST_USERS ?= 30
LOCUST_TIME ?= 60s
LOCUST_SPAWN_RATE ?= 10

# Both use load-test API keys whose limit (LOADTEST_THROTTLE_RATE) no run reaches; a 429 fails.
# Locust web UI on http://127.0.0.1:8089 against the running system (`make run`).
locust: $(STAMP)
	@$(PY) -m loadtests.run_loadtest --web-ui --host $(LOCUST_HOST)

# Headless, bounded run with CSV/HTML reports in loadtests/reports/, then the correctness gates.
loadtest: $(STAMP)
	@$(PY) -m loadtests.run_loadtest --host $(LOCUST_HOST) --users $(LOCUST_USERS) --time $(LOCUST_TIME) --spawn-rate $(LOCUST_SPAWN_RATE)

# Every benchmark scenario on a throwaway embedded PostgreSQL/Redis (< 10 min), report in
# loadtests/reports/bench.md; `make bench ARGS=--quick` runs each briefly (< 2 min).
bench: $(STAMP)
	@BENCH_COMMAND="make bench$(if $(ARGS), ARGS='$(ARGS)')" $(PY) -m loadtests.bench $(ARGS)

# Failover drill on throwaway servers: primary + synchronous standby, two web processes, two
# workers; kill -9 the primary under order load, promote the standby, check that no accepted
# order is lost (report printed, exit code 1 on a failed check). Two minutes on a quiet machine.
drill: $(STAMP)
	@$(PY) -m loadtests.drill $(ARGS)

# Reads, health, intake, pipeline and maintenance on 10 M orders and 1 M waiting jobs against a
# small reference database in the same run; the data set is built once under
# .devstack/volume-N/ and reused (ARGS=--rebuild builds it again; ARGS=--quick: 1 M orders).
bench-volume: $(STAMP)
	@BENCH_COMMAND="make bench-volume$(if $(ARGS), ARGS='$(ARGS)')" $(PY) -m loadtests.bench_volume $(ARGS)

stack-start: $(STAMP)
	@$(PY) -m config.devstack start

stack-stop: $(STAMP)
	@$(PY) -m config.devstack stop

stack-status: $(STAMP)
	@$(PY) -m config.devstack status

clean: stack-stop
	rm -rf .devstack
