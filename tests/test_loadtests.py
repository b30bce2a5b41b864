"""The load-test tooling runs end to end: the Locust suite against a live server (gunicorn and a
worker, as `make run` starts them) with its correctness gates, and the benchmark driver's report.

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
from django.db import connection

from config.devstack.launcher import WORKER_COMMAND, _venv_bin
from fulfillment.services.api_keys import api_key_create
from loadtests.bench import UNLIMITED_RATE, start_web, stop_web
from loadtests.gates import run_gates
from tests.factories import make_product

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _server_env() -> dict[str, str]:
    """The environment of a server on the test database (committed data is visible to it)."""
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": "postgres://{}:{}@{}:{}/{}".format(
            db["USER"], db["PASSWORD"] or "", db["HOST"], db["PORT"], db["NAME"]
        ),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50)[:50],
        "THROTTLE_RATE_KEY": UNLIMITED_RATE,
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
        worker.terminate()
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        stop_web(web)


@pytest.mark.slow
def test_locust_smoke_run_makes_requests_without_5xx_and_passes_the_gates(live_system, tmp_path):
    # given: products with plenty of stock, and one that sells out at once
    for _ in range(8):
        make_product(stock=100_000)
    make_product(stock=3)
    # the locustfile's users take this key (admin may do what every role does)
    key = api_key_create(name="locust-smoke", role="admin").raw_key
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LOCUST_API_KEY": key}
    prefix = tmp_path / "locust"

    # when: the locustfile runs headless for a few seconds
    result = subprocess.run(
        [
            str(BIN / "locust"),
            "-f",
            str(ROOT / "loadtests" / "locustfile.py"),
            "--headless",
            "--host",
            live_system,
            "-u",
            "12",
            "-r",
            "12",
            "-t",
            "5s",
            "--csv",
            str(prefix),
            "--only-summary",
            "--stop-timeout",
            "5",
            "--exit-code-on-error",
            "0",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # then: every user class made its requests, none failed, and the gates pass
    assert result.returncode == 0, result.stderr[-3000:]
    with open(f"{prefix}_stats.csv", newline="") as fh:
        stats = {row["Name"]: row for row in csv.DictReader(fh)}
    for name in (
        "POST /orders/",
        "GET /orders/{id}/",
        "POST /orders/bulk_create/ (100)",
        "GET /products/{id}/",
        "POST /inventory/{id}/adjust/",
    ):
        assert int(stats[name]["Request Count"]) > 0, (name, sorted(stats))
    assert int(stats["Aggregated"]["Failure Count"]) == 0, Path(
        f"{prefix}_failures.csv"
    ).read_text()
    gates = run_gates(str(prefix))
    assert [name for name, ok, _ in gates if not ok] == [], gates
    assert {name for name, _, _ in gates} >= {
        "requests were made",
        "no 5xx responses",
        "stock never negative, reserved <= on hand",
        "ledger reconciliation clean",
        "accepted units = reservations + shipments",
    }


@pytest.mark.slow
def test_bench_driver_quick_report_has_every_scenario_with_its_reference_and_ratio(tmp_path):
    # given: the driver at an even smaller size than --quick (the shape matters here, not speed)
    report = tmp_path / "bench.md"
    args = ["--quick", "--duration", "1", "--warmup", "0", "--bulk-size", "50"]
    args += ["--hot-units", "60", "--pipeline-orders", "30", "--noop-jobs", "90"]
    args += ["--delay-seconds", "7", "--delay-warmup", "3", "--report", str(report)]

    # when
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", *args],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "BENCH_COMMAND"},
        capture_output=True,
        text=True,
        timeout=150,
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
        "http_hot_product",
        "http_bulk",
        "pipeline_zero_delays",
        "pipeline_default_delays",
    }
    summary = {
        cells[0]: cells[1:]
        for line in text.splitlines()
        if line.startswith("| ")
        and len(cells := [c.strip() for c in line.strip("|").split("|")]) == 6
    }
    figures = [f for f in summary if f not in ("figure", "---")]
    expected = [
        "intake: accepted orders/s",
        "intake: latency p50 / p99",
        "intake: 5xx",
        "hot product: accepted orders/s",
        "hot product: oversell",
        "bulk: orders/s through bulk_create of 50",
        "pipeline, zero delays: orders/s pending → delivered, 1 worker",
        "pipeline, zero delays: orders/s pending → delivered, 2 workers",
        "pipeline, default delays: orders completed per minute",
        "pipeline, default delays: orders in flight",
        "pipeline, default delays: stage start lag",
    ]
    assert len(figures) == len(expected), figures
    for figure, prefix in zip(figures, expected, strict=True):
        assert figure.startswith(prefix), (figure, prefix)
    for figure in figures:
        value, reference, ratio, target, verdict = summary[figure]
        assert value and target and verdict in ("**pass**", "**MISS**", "—"), summary[figure]
        if value.endswith("orders/s"):  # throughput: against its reference in the same run
            assert reference and float(ratio.replace(",", "")) > 0, summary[figure]
    assert results["http_hot_product"]["oversell"] == 0
    assert results["http_single"]["5xx"] == 0
