"""docker-compose.yml and the Dockerfile (no Docker engine here, so they are checked statically).

The compose file is validated against the Compose specification schema vendored in
check-jsonschema (no network), and its commands must be the ones `make run` uses.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.launcher import WEB_COMMAND, WORKER_COMMAND

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def test_compose_file_matches_the_compose_specification() -> None:
    check_jsonschema = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [
            str(check_jsonschema),
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE_FILE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_web_and_worker_run_the_commands_make_run_uses(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["web"]["command"] == WEB_COMMAND
    assert services["worker"]["command"] == WORKER_COMMAND


def test_dockerfile_default_command_is_the_web_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    cmd_lines = [line for line in dockerfile if line.startswith("CMD ")]
    assert len(cmd_lines) == 1
    assert json.loads(cmd_lines[0].removeprefix("CMD ")) == WEB_COMMAND
    assert dockerfile[[i for i, line in enumerate(dockerfile) if line.startswith("FROM ")][0]] == (
        "FROM python:3.11-slim"
    )
    assert any(line.startswith("USER ") and "root" not in line for line in dockerfile)


def test_worker_is_scalable(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert "ports" not in worker
    assert "deploy" not in worker or "replicas" not in worker["deploy"]


def _one_shot_services(services: dict[str, Any]) -> set[str]:
    """Services others wait on to *complete* (e.g. migrate): jobs, not long-running servers."""
    return {
        name
        for service in services.values()
        for name, dep in (service.get("depends_on") or {}).items()
        if isinstance(dep, dict) and dep.get("condition") == "service_completed_successfully"
    }


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker"} <= set(services)
    one_shot = _one_shot_services(services)
    assert one_shot == {"migrate"}
    assert services["migrate"]["restart"] == "no"
    for name, service in services.items():
        if name in one_shot:
            continue
        check = service.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name


def test_services_wait_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("web", "worker"):
        deps = services[name]["depends_on"]
        assert deps["postgres"] == {"condition": "service_healthy"}
        assert deps["redis"] == {"condition": "service_healthy"}
        assert deps["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert "/health/ready/" in " ".join(services["web"]["healthcheck"]["test"])


def test_app_services_are_configured_for_production(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("migrate", "web", "worker"):
        env = services[name]["environment"]
        assert services[name]["build"] == "."
        assert env["DEBUG"] == "0"
        assert (
            env["DATABASE_URL"].startswith("postgres://")
            and "@postgres:5432/" in env["DATABASE_URL"]
        )
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        # No secret in the file: compose refuses to start without SECRET_KEY in the environment.
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
        assert "ALLOWED_HOSTS" in env
    assert services["postgres"]["image"] == "postgres:17"
    assert services["redis"]["image"].startswith("redis:7")
    named = set(compose["volumes"])
    assert {"pgdata", "redisdata"} <= named
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
