"""Pytest plugin (loaded with ``-p config.devstack.pytest_plugin``): when DATABASE_URL /
REDIS_URL are not set, start (or reuse) the embedded PostgreSQL and Redis before pytest-django
reads the settings, and stop at the end whatever this session started."""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

_stack = None


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> Generator[None, None, None]:
    global _stack
    from config.devstack.servers import external_or_embedded_env

    env, _stack = external_or_embedded_env()
    os.environ["DATABASE_URL"] = env["DATABASE_URL"]
    # Tests use their own Redis database so a running `make run` keeps its cache.
    redis_url = env["REDIS_URL"]
    if _stack is not None and redis_url.endswith("/0"):
        redis_url = redis_url[:-2] + "/15"
    os.environ["REDIS_URL"] = redis_url
    # A `replica` alias that mirrors the test database (TEST MIRROR), with the primary/replica
    # router off: tests/test_db_router.py switches it on where it is under test.
    os.environ.setdefault("DATABASE_REPLICA_URL", env["DATABASE_URL"])
    os.environ.setdefault("DATABASE_ROUTERS", "")
    return (yield)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _stack is not None and _stack.started:
        _stack.stop(only_started=True)
