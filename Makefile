# Two commands: `make run` starts the whole system, `make test` runs the tests.
# Both bootstrap .venv (again only when pyproject.toml changes) and the embedded servers.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck locust loadtest bench stack-start stack-stop stack-status clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@echo "[make] installing the project and its dev tools into $(VENV)"
	@$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

run: $(STAMP)
	@$(PY) -m config.devstack run

test: $(STAMP)
	@$(PY) -m pytest $(ARGS)

lint: $(STAMP)
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

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

stack-start: $(STAMP)
	@$(PY) -m config.devstack start

stack-stop: $(STAMP)
	@$(PY) -m config.devstack stop

stack-status: $(STAMP)
	@$(PY) -m config.devstack status

clean: stack-stop
	rm -rf .devstack
