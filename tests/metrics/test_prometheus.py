"""A real Prometheus (Debian's ``prometheus`` package) scrapes a running gunicorn and a running
Procrastinate worker, and PromQL over its HTTP API shows a burst of orders: accepted by the web
processes, moved through every stage by the worker.

The processes run as in the compose stack (web and worker on different hosts): gunicorn serves
``/metrics`` for its processes, the worker its own on ``METRICS_WORKER_PORT``. A second test
runs them as ``make run`` does (one host, one shared ``PROMETHEUS_MULTIPROC_DIR``): the web's
``/metrics`` then carries the worker's series too.

Without the binaries these tests skip with the command that installs them; with
``REQUIRE_PROMETHEUS=1`` (set by ``.ci/run``) a missing binary fails them instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from config.devstack.launcher import WEB_COMMAND, WORKER_COMMAND, _venv_bin
from tests.conftest import issue_key, missing_tool, stop_process, subprocess_database_url
from tests.factories import make_product

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("empty_queue"),
]
ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "apt-get install prometheus"
TOKEN = secrets.token_urlsafe(24)
ORDERS = 12


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path:
        return path
    missing_tool(f"{name} not found: install it with `{INSTALL_HINT}`", "REQUIRE_PROMETHEUS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except requests.RequestException as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def app_env(multiproc_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "DATABASE_REPLICA_URL": "",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        "PIPELINE_DELAY_PROCESSING": "0",
        "PIPELINE_DELAY_SHIPPING": "0",
        "PIPELINE_DELAY_DELIVERY": "0",
        "PIPELINE_FAILURE_RATE_PROCESSING": "0",
        "PIPELINE_FAILURE_RATE_SHIPPING": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class Processes:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with (self.tmp / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.started.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                stop_process(proc, timeout=20)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop()


def start_web(procs: Processes, multiproc_dir: Path) -> str:
    port = free_port()
    env = app_env(multiproc_dir, BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="2")
    procs.start("web", _venv_bin(WEB_COMMAND), env)
    base = f"http://127.0.0.1:{port}"
    wait_for(
        lambda: requests.get(base + "/health/live/", timeout=1).ok,
        f"gunicorn: {procs.log('web')}",
    )
    return base


def start_worker(procs: Processes, multiproc_dir: Path, **extra: str) -> None:
    procs.start("worker", _venv_bin(WORKER_COMMAND), app_env(multiproc_dir, **extra))


def order_burst(base: str) -> None:
    product = make_product(stock=1000)
    key = issue_key("operator")
    for i in range(ORDERS):
        response = requests.post(
            base + "/api/v1/orders/",
            json={
                "customer_name": f"Burst {i}",
                "customer_email": f"burst{i}@example.com",
                "items": [{"product_id": product.id, "quantity": 1}],
            },
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
    rejected = requests.post(
        base + "/api/v1/orders/",
        json={
            "customer_name": "Too many",
            "customer_email": "many@example.com",
            "items": [{"product_id": product.id, "quantity": 5000}],
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert rejected.status_code == 409


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


class Prometheus:
    def __init__(self, procs: Processes, targets: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        jobs = "".join(
            f"""
  - job_name: {job}
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials: {TOKEN}
    static_configs:
      - targets: ["{target}"]
"""
            for job, target in targets.items()
        )
        config = procs.tmp / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:" + jobs
        )
        procs.start(
            "prometheus",
            [
                _binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={procs.tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            dict(os.environ),
        )
        wait_for(
            lambda: requests.get(self.base + "/-/ready", timeout=1).ok,
            f"prometheus: {procs.log('prometheus')}",
        )

    def query(self, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
        response = requests.get(
            self.base + "/api/v1/query", params={"query": promql}, timeout=5
        ).json()
        assert response["status"] == "success", response
        return {
            tuple(sorted(r["metric"].items())): float(r["value"][1])
            for r in response["data"]["result"]
        }

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return next(iter(result.values())) if result else None

    def wait_for_value(self, promql: str, expected: float, timeout: float = 60.0) -> None:
        wait_for(lambda: self.scalar(promql) == expected, f"{promql} == {expected}", timeout)


def test_prometheus_scrapes_web_and_worker_and_sees_a_burst_of_orders(
    processes: Processes, tmp_path: Path
) -> None:
    # given: web and worker as on two hosts, each with its own series, scraped by Prometheus
    _binary("prometheus")
    base = start_web(processes, tmp_path / "web-metrics")
    worker_port = free_port()
    start_worker(processes, tmp_path / "worker-metrics", METRICS_WORKER_PORT=str(worker_port))
    worker_url = f"http://127.0.0.1:{worker_port}/metrics"
    wait_for(lambda: scrape(worker_url), f"the worker's metrics port: {processes.log('worker')}")
    prometheus = Prometheus(
        processes, {"web": base.removeprefix("http://"), "worker": f"127.0.0.1:{worker_port}"}
    )
    wait_for(
        lambda: prometheus.query("up == 1").keys() and len(prometheus.query("up == 1")) == 2,
        "both targets up",
    )
    # when
    order_burst(base)
    # then: PromQL shows the accepted and rejected orders and every stage the worker ran
    prometheus.wait_for_value("sum(fulfillment_orders_accepted_total)", ORDERS)
    assert prometheus.scalar(
        'sum(fulfillment_orders_accepted_total{job="web", source="single"})'
    ) == (ORDERS)
    prometheus.wait_for_value(
        'sum(fulfillment_orders_rejected_total{reason="insufficient_stock"})', 1
    )
    for stage in ("processing", "shipped", "delivered"):
        prometheus.wait_for_value(
            f'sum(fulfillment_stage_transitions_total{{job="worker", to="{stage}"}})', ORDERS
        )
    prometheus.wait_for_value(
        'sum(fulfillment_job_duration_seconds_count{task="fulfillment.advance_order", '
        'outcome="succeeded"})',
        3 * ORDERS,
    )
    prometheus.wait_for_value('fulfillment_orders_in_status{status="delivered"}', ORDERS)
    assert prometheus.scalar("fulfillment_workers_alive") == 1
    assert (
        prometheus.scalar(
            'sum(fulfillment_http_requests_total{route="api/v1/orders/", method="POST"})'
        )
        == ORDERS + 1
    )


def test_on_one_host_the_web_metrics_carry_the_workers_series(
    processes: Processes, tmp_path: Path
) -> None:
    # given: web and worker sharing one multiprocess directory, as `make run` starts them
    shared = tmp_path / "metrics"
    base = start_web(processes, shared)
    start_worker(processes, shared)
    # when
    order_burst(base)

    # then
    def delivered() -> bool:
        scraped = scrape(base + "/metrics")
        return scraped.get(("fulfillment_stage_transitions_total", (("to", "delivered"),))) == (
            ORDERS
        )

    wait_for(delivered, f"delivered orders in the web's /metrics: {processes.log('worker')}")
    scraped = scrape(base + "/metrics")
    assert scraped[("fulfillment_orders_accepted_total", (("source", "single"),))] == ORDERS
    assert scraped[("fulfillment_stage_lag_seconds_count", ())] >= 0
