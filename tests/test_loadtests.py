"""The load-test tooling runs end to end: the Locust suite against a live server (gunicorn and a
worker, as `make run` starts them) with its correctness gates, the load-test keys that keep it
out of the throttle, and the benchmark driver's report.

These check that the tools work and what they report, never how fast anything is.
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.devstack.launcher import WORKER_COMMAND, _venv_bin
from config.devstack.replication import pgbouncer_path
from fulfillment.models import ApiKey
from fulfillment.services.api_keys import api_key_create
from loadtests.benchlib import UNLIMITED_RATE, start_web, stop_web
from loadtests.gates import run_gates
from loadtests.keys import DEFAULT_RATE, ensure_load_test_keys, read_keys
from tests.conftest import stop_process, subprocess_database_url
from tests.factories import make_product

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The live server's limit for keys without one of their own: tiny, so that even a slow smoke run
# exceeds it and only keys with their own higher rate get through without a 429.
SERVER_KEY_RATE = "5/min"
GATES = {
    "requests were made",
    "no 5xx responses",
    "no 429 (throttled) responses",
    "stock never negative, reserved <= on hand",
    "ledger reconciliation clean",
    "accepted units = reservations + shipments",
}


def _server_env() -> dict[str, str]:
    """The environment of a server on the test database (committed data is visible to it)."""
    return {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50)[:50],
        "THROTTLE_RATE_KEY": SERVER_KEY_RATE,
        "THROTTLE_RATE_ANON": UNLIMITED_RATE,
        "SECURE_SSL_REDIRECT": "0",
        "PIPELINE_DELAY_PROCESSING": "0",
        "PIPELINE_DELAY_SHIPPING": "0",
        "PIPELINE_DELAY_DELIVERY": "0",
    }


@pytest.fixture
def live_system(transactional_db: None, empty_queue: None, tmp_path: Path) -> Iterator[str]:
    """gunicorn (2 sync workers) and a Procrastinate worker on the test database; stopped before
    the test database is flushed."""
    env = _server_env()
    web, base_url = start_web(env, workers=2, log=tmp_path / "gunicorn.log")
    with (tmp_path / "worker.log").open("wb") as log:
        worker = subprocess.Popen(
            _venv_bin(WORKER_COMMAND), cwd=ROOT, env=env, stdout=log, stderr=log
        )
    try:
        yield base_url
    finally:
        stop_process(worker, timeout=15)
        stop_web(web)


def _products() -> None:
    """Products with plenty of stock, and one that sells out at once."""
    for _ in range(8):
        make_product(stock=100_000)
    make_product(stock=3)


def _run_loadtest(base_url: str, prefix: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`make loadtest` for 5 s with 12 users: load-test keys, headless Locust, then the gates."""
    return subprocess.run(
        [sys.executable, "-m", "loadtests.run_loadtest", "--host", base_url]
        + ["--users", "12", "--spawn-rate", "12", "--time", "5s", "--prefix", str(prefix)],
        cwd=ROOT,
        env={**_server_env(), "PYTHONUNBUFFERED": "1", **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


def _stats(prefix: Path) -> dict[str, dict[str, str]]:
    with open(f"{prefix}_stats.csv", newline="") as fh:
        return {row["Name"]: row for row in csv.DictReader(fh)}


def _failures(prefix: Path) -> list[dict[str, str]]:
    with open(f"{prefix}_failures.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_locust_smoke_run_makes_requests_without_5xx_or_429_and_passes_the_gates(
    live_system, tmp_path
):
    # given: products, and a server whose default per-key limit a few seconds of load exceed
    _products()
    prefix = tmp_path / "locust"

    # when: `make loadtest` runs (it creates the load-test keys under DEVSTACK_DIR)
    result = _run_loadtest(live_system, prefix, {"DEVSTACK_DIR": str(tmp_path)})

    # then: the keys have the load-test rate, every user class made its requests, none failed
    # (no 429 among them), and the gates pass
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    keys = read_keys(tmp_path / "loadtest-keys.json")
    assert sorted(keys) == ["admin", "operator", "viewer"]
    assert {
        k.name: k.throttle_rate for k in ApiKey.objects.filter(name__startswith="loadtest-")
    } == {
        "loadtest-admin": DEFAULT_RATE,
        "loadtest-operator": DEFAULT_RATE,
        "loadtest-viewer": DEFAULT_RATE,
    }
    stats = _stats(prefix)
    for name in (
        "POST /orders/",
        "GET /orders/{id}/",
        "POST /orders/bulk_create/ (100)",
        "GET /products/{id}/",
        "POST /inventory/{id}/adjust/",
    ):
        assert int(stats[name]["Request Count"]) > 0, (name, sorted(stats))
    # more requests than the server's default limit lets one key make in the run
    assert int(stats["Aggregated"]["Request Count"]) > 5, stats["Aggregated"]
    assert int(stats["Aggregated"]["Failure Count"]) == 0, _failures(prefix)
    assert not [n for n in stats if "429" in n], sorted(stats)
    assert _failures(prefix) == []
    assert "PASS  no 429 (throttled) responses" in result.stdout, result.stdout[-3000:]
    gates = run_gates(str(prefix))
    assert [name for name, ok, _ in gates if not ok] == [], gates
    assert {name for name, _, _ in gates} >= GATES


@pytest.mark.slow
def test_locust_counts_a_429_as_a_failure_and_the_gates_fail(live_system, tmp_path):
    # given: one key held to the server's default limit (5/min) for every simulated user
    _products()
    key = api_key_create(name="locust-throttled", role="admin").raw_key
    prefix = tmp_path / "locust"

    # when
    result = _run_loadtest(live_system, prefix, {"LOCUST_API_KEY": key})

    # then: the throttled requests are failures, the run's gate says so, nothing else failed
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    stats = _stats(prefix)
    assert int(stats["Aggregated"]["Failure Count"]) > 0, stats["Aggregated"]
    failures = _failures(prefix)
    assert failures and all("throttled 429" in f["Error"] for f in failures), failures
    throttled = sum(int(f["Occurrences"]) for f in failures)
    assert throttled == int(stats["Aggregated"]["Failure Count"])
    assert "FAIL  no 429 (throttled) responses" in result.stdout, result.stdout[-3000:]
    gates = {name: ok for name, ok, _ in run_gates(str(prefix))}
    assert gates.pop("no 429 (throttled) responses") is False
    assert set(gates) == GATES - {"no 429 (throttled) responses"}
    assert all(gates.values()), gates


def test_load_test_keys_are_created_once_reused_and_replaced_when_the_rate_changes(db, tmp_path):
    path = tmp_path / "loadtest-keys.json"

    first = ensure_load_test_keys(path=path)
    stored = read_keys(path)
    again = ensure_load_test_keys(path=path)
    other_rate = ensure_load_test_keys(rate="5000/s", path=path)

    assert sorted(first) == ["admin", "operator", "viewer"]
    assert stored == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert again == first
    assert set(other_rate.values()).isdisjoint(first.values())
    assert read_keys(path) == other_rate
    keys = ApiKey.objects.filter(name__startswith="loadtest-").order_by("name")
    assert [(k.name, k.role, k.throttle_rate) for k in keys] == [
        ("loadtest-admin", "admin", "5000/s"),
        ("loadtest-operator", "operator", "5000/s"),
        ("loadtest-viewer", "viewer", "5000/s"),
    ]


@pytest.mark.slow
def test_bench_driver_quick_report_has_every_scenario_with_its_reference_and_ratio(tmp_path):
    # given: the driver at an even smaller size than --quick (the shape matters here, not speed)
    report = tmp_path / "bench.md"
    args = ["--quick", "--duration", "1", "--warmup", "0", "--bulk-size", "50"]
    args += ["--hot-units", "60", "--pipeline-orders", "30", "--noop-jobs", "90"]
    args += ["--delay-seconds", "7", "--delay-warmup", "3", "--report", str(report)]
    args += ["--metrics-volume", "2000"]
    args += ["--steady-rates", "20", "--steady-seconds", "3", "--steady-warmup", "2"]
    args += ["--steady-reference-seconds", "2"]

    # when
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", *args],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "BENCH_COMMAND"},
        capture_output=True,
        text=True,
        timeout=420,
    )

    # then: one report with every scenario, each figure next to its reference and a ratio
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = report.read_text()
    assert text in result.stdout  # the same report goes to stdout
    assert re.search(r"Machine: \d+ cores.*PostgreSQL \d+", text)
    assert "`python -m loadtests.bench --quick --duration 1" in text
    results = json.loads(report.with_suffix(".json").read_text())
    assert set(results) == {
        "statements",
        "pgbench_single",
        "http_single",
        "http_single_pgbouncer",
        "http_hot_product",
        "http_bulk",
        "pipeline_zero_delays",
        "pipeline_default_delays",
        "webhook_delivery",
        "http_single_metrics",
        "metrics_scrape",
        "steady_state",
    }
    summary = {
        cells[0]: cells[1:]
        for line in text.splitlines()
        if line.startswith("| ")
        and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 6
    }
    figures = [f for f in summary if f not in ("figure", "---")]
    # The PgBouncer scenario measures only where PgBouncer is installed (CI requires it).
    pgbouncer_rows = (
        ["intake through PgBouncer (transaction pooling)", "intake through PgBouncer: 5xx"]
        if pgbouncer_path() is not None or os.environ.get("REQUIRE_PGBOUNCER") == "1"
        else []
    )
    expected = [
        "intake: accepted orders/s",
        "intake: latency p50 / p99",
        "intake: 5xx",
        *pgbouncer_rows,
        "hot product: accepted orders/s",
        "hot product: oversell",
        "bulk: orders/s through bulk_create of 50",
        "pipeline, zero delays: orders/s pending → delivered, 1 worker",
        "pipeline, zero delays: orders/s pending → delivered, 2 workers",
        "pipeline, default delays, bulk-fed: orders completed per minute",
        "pipeline, default delays, bulk-fed: orders in flight",
        "pipeline, default delays, bulk-fed: stage start lag",
        "webhooks: every event delivered",
        "webhooks: delivery lag, event to receipt",
        "intake with metrics on (multiprocess) vs off",
        "GET /metrics p95",
        "steady state (HTTP intake + worker pool, as make run): highest open-loop rate",
        "steady state at 20 orders/s: system CPU per order",
    ]
    assert len(figures) == len(expected), figures
    for figure, prefix in zip(figures, expected, strict=True):
        assert figure.startswith(prefix), (figure, prefix)
    for figure in figures:
        value, reference, ratio, target, verdict = summary[figure]
        assert value and target and verdict in ("**pass**", "**MISS**", "—"), summary[figure]
        if value.endswith("orders/s"):  # throughput: against its reference in the same run
            assert reference and float(ratio.replace(",", "")) > 0, summary[figure]
    steady = results["steady_state"]
    (run,) = steady["runs"]
    assert run["rate"] == 20 and run["requests"] > 0 and run["5xx"] == 0
    assert run["web cpu ms/order"] > 0 and run["worker cpu ms/order"] > 0
    assert run["postgres cpu ms/order"] > 0 and run["stage jobs started"] > 0
    assert steady["intake alone"]["accepted"] > 0 and steady["pipeline alone"]["orders"] > 0
    assert "Steady state, every rate:" in text
    assert results["http_hot_product"]["oversell"] == 0
    assert results["http_single"]["5xx"] == 0


def test_steady_state_bench_names_the_stage_task_as_the_queue_does():
    from fulfillment.queue import ADVANCE_ORDER_TASK
    from loadtests.bench_steady import ADVANCE_ORDER_TASK as BENCH_TASK

    assert BENCH_TASK == ADVANCE_ORDER_TASK
