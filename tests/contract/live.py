"""A live server for the contract tests: gunicorn as `make run` starts it, on the test database,
with throttling out of the way (the fuzzer sends hundreds of requests with one key)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from loadtests.benchlib import UNLIMITED_RATE, start_web, stop_web
from tests.conftest import subprocess_database_url


def server_env(*, anonymous_reads: bool) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": subprocess_database_url(),
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50)[:50],
        "SECURE_SSL_REDIRECT": "0",
        "ALLOW_ANONYMOUS_READS": "1" if anonymous_reads else "0",
        "THROTTLE_RATE_KEY": UNLIMITED_RATE,
        "THROTTLE_RATE_ANON": UNLIMITED_RATE,
        # As make run: webhook URLs on private addresses are allowed (the schema cannot say
        # which addresses a deployment refuses; its description says so).
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS": "1",
    }


@contextmanager
def live_server(*, anonymous_reads: bool, log: Path, workers: int = 2) -> Iterator[str]:
    """Yields the base URL of a gunicorn on the test database; stops it on exit."""
    web, base_url = start_web(server_env(anonymous_reads=anonymous_reads), workers, log=log)
    try:
        yield base_url
    finally:
        stop_web(web)
