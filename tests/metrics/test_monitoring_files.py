"""The Prometheus scrape config, the alert rules and the Grafana dashboard of the compose stack
(deploy/): checked by promtool (Debian's ``prometheus`` package; skips without it unless
``REQUIRE_PROMETHEUS=1``), and every series they name is one ``/metrics`` serves."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from tests.metrics.test_prometheus import _binary

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fulfillment.json"
TOKEN_PATH = "/etc/prometheus/metrics-token"
SAMPLE_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
SERIES = re.compile(r"\b(fulfillment_[a-z0-9_]+)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_binary("promtool"), *args], capture_output=True, text=True, timeout=60)


def test_promtool_accepts_the_scrape_config_and_its_rule_files(tmp_path: Path) -> None:
    # The token file exists only in the container: point a copy at a local one.
    (tmp_path / "metrics-token").write_text("token")
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    config = tmp_path / "prometheus.yml"
    config.write_text(
        PROMETHEUS_CONFIG.read_text().replace(TOKEN_PATH, str(tmp_path / "metrics-token"))
    )
    result = promtool("check", "config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rules found" not in result.stdout  # the rule file was read, with all its rules


def test_promtool_accepts_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    names = [r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert names == ["NoLiveWorker", "QueueBacklog", "HighServerErrorRate", "ReconciliationDrift"]


def test_the_alerts_fire_on_the_conditions_they_page_for(tmp_path: Path) -> None:
    tests = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": "fulfillment_workers_alive", "values": "1 0 0 0 0"},
                    {
                        "series": 'fulfillment_oldest_waiting_job_seconds{queue="pipeline"}',
                        "values": "5 90 120 150 180",
                    },
                    {"series": "fulfillment_reconciliation_drift_products", "values": "0 0 2 2 2"},
                    {
                        "series": 'fulfillment_http_requests_total{status="200"}',
                        "values": "0+600x10",
                    },
                    {
                        "series": 'fulfillment_http_requests_total{status="500"}',
                        "values": "0+60x10",
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "4m",
                        "alertname": "NoLiveWorker",
                        "exp_alerts": [{"exp_labels": {"severity": "page"}}],
                    },
                    {
                        "eval_time": "4m",
                        "alertname": "QueueBacklog",
                        "exp_alerts": [{"exp_labels": {"severity": "page", "queue": "pipeline"}}],
                    },
                    {
                        "eval_time": "4m",
                        "alertname": "ReconciliationDrift",
                        "exp_alerts": [{"exp_labels": {"severity": "ticket"}}],
                    },
                    {
                        "eval_time": "10m",
                        "alertname": "HighServerErrorRate",
                        "exp_alerts": [{"exp_labels": {"severity": "page"}}],
                    },
                    {"eval_time": "1m", "alertname": "QueueBacklog", "exp_alerts": []},
                ],
            }
        ],
    }
    annotations = {
        "NoLiveWorker": {
            "summary": "No Procrastinate worker has a fresh heartbeat",
            "description": "No worker has beaten within STALLED_WORKER_SECONDS for 2 minutes: "
            "orders stay where they are until a worker runs.",
        },
        "QueueBacklog": {
            "summary": "Jobs of queue pipeline wait more than 60 s",
            "description": "The job at the head of queue pipeline has been due for 3m 0s: the "
            "workers do not keep up, or none runs.",
        },
        "ReconciliationDrift": {
            "summary": "Stock disagrees with the ledger",
            "description": "The last inventory reconciliation found 2 product(s) whose stock "
            "differs from the sum of their ledger rows; see /health/ and the admin.",
        },
        "HighServerErrorRate": {
            "summary": "More than 1 % of HTTP requests answer 5xx",
            "description": "9.091% of requests failed with a 5xx over 5 minutes.",
        },
    }
    for alert in tests["tests"][0]["alert_rule_test"]:
        for exp in alert["exp_alerts"]:
            exp["exp_annotations"] = annotations[alert["alertname"]]
    path = tmp_path / "alerts_test.yml"
    path.write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


@pytest.mark.django_db
def test_every_series_the_dashboard_and_alerts_name_is_served_by_metrics(settings) -> None:
    # given: what /metrics serves (every family, with its sample names: _total, _bucket, ...)
    settings.METRICS_TOKEN = "t" * 32
    response = Client().get("/metrics", headers={"Authorization": "Bearer " + "t" * 32})
    served = set()
    for family in text_string_to_metric_families(response.content.decode()):
        # A family whose labels have not been seen yet has no samples, but its names are fixed.
        served |= {s.name for s in family.samples} | {
            f"{family.name}{suffix}" for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))
        }
    # when
    exprs = dashboard_exprs()
    rules = [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    named = {name for expr in exprs + rules for name in SERIES.findall(expr)}
    # then
    assert len(exprs) >= 12
    assert named and not named - served, sorted(named - served)


def test_the_dashboard_shows_what_operators_need() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = " / ".join(p["title"] for p in dashboard["panels"]).lower()
    for needed in (
        "by status",
        "stage lag p99",
        "jobs waiting",
        "oldest waiting job",
        "5xx",
        "low-stock",
        "webhook",
    ):
        assert needed in titles, needed
    assert all(
        t["datasource"]["uid"] == "prometheus" for p in dashboard["panels"] for t in p["targets"]
    )
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["uid"] == "prometheus"
