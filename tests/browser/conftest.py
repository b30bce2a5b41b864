"""A real Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium) against a
gunicorn server in production mode (``DEBUG=0``) on the test database.

Without Chromium these tests skip with the command that installs it; with ``REQUIRE_BROWSER=1``
(set by ``.ci/run``) a missing browser fails them instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.conftest import missing_tool, subprocess_database_url

ROOT = Path(__file__).resolve().parents[2]
INSTALL_HINT = "apt-get install chromium chromium-driver"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",  # runs as root in CI containers
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1600",
]


def _browser_binaries() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = " and ".join(
        name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path
    )
    missing_tool(f"{missing} not found: install them with `{INSTALL_HINT}`", "REQUIRE_BROWSER")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """gunicorn as production runs it (``config.gunicorn``), bound to a loopback port."""

    log_path: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.origin + path

    def start(self) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": subprocess_database_url(),
            "DATABASE_REPLICA_URL": "",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1",
            # plain HTTP on loopback: no HTTPS redirect, HSTS or secure-only cookies
            "SECURE_SSL_REDIRECT": "0",
            "SECURE_HSTS_SECONDS": "0",
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": "2",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "gunicorn"), "config.wsgi:application"]
                + ["--config", "python:config.gunicorn"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not self._live():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gunicorn did not start:\n{self.log()}")
            time.sleep(0.1)

    def _live(self) -> bool:
        try:
            return requests.get(self.url("/health/live/"), timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


@pytest.fixture(scope="module")
def browser_binaries() -> tuple[str, str]:
    return _browser_binaries()


@pytest.fixture(scope="module")
def live_server_url(
    browser_binaries: tuple[str, str],
    django_db_setup: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """The server's origin; it is stopped before the session drops the test database."""
    server = LiveServer(log_path=tmp_path_factory.mktemp("gunicorn") / "gunicorn.log")
    server.start()
    try:
        yield server.origin
    finally:
        server.stop()


class Browser:
    """A Selenium Chrome session that records the page's console and network activity."""

    def __init__(self, driver: webdriver.Chrome, origin: str) -> None:
        self.driver = driver
        self.origin = origin

    def get(self, path: str) -> None:
        self.driver.get(self.origin + path)

    def console_errors(self) -> list[dict[str, Any]]:
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def requested_urls(self) -> list[str]:
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def assert_clean(self) -> list[str]:
        """No console error and no request to another host since the last check; returns the
        URLs the pages requested."""
        errors = self.console_errors()
        urls = self.requested_urls()
        origin = urlsplit(self.origin)
        elsewhere = [
            url
            for url in urls
            if urlsplit(url).scheme not in ("data", "blob")
            and (urlsplit(url).scheme, urlsplit(url).netloc) != (origin.scheme, origin.netloc)
        ]
        assert errors == [], errors
        assert elsewhere == [], elsewhere
        return urls


@pytest.fixture(scope="module")
def chrome(
    browser_binaries: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[webdriver.Chrome]:
    chromium, chromedriver = browser_binaries
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chrome: webdriver.Chrome, live_server_url: str) -> Iterator[Browser]:
    """A clean session per test: no cookies, no log entries left from an earlier test."""
    chrome.execute_cdp_cmd("Network.clearBrowserCookies", {})
    chrome.get_log("browser")
    chrome.get_log("performance")
    yield Browser(chrome, live_server_url)
    chrome.get("about:blank")
