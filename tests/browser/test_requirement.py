"""Without Chromium the browser tests skip on a developer machine and fail where a browser is
required (CI sets REQUIRE_BROWSER=1); either way the message says how to install it."""

from __future__ import annotations

import pytest

from tests.browser.conftest import INSTALL_HINT, _browser_binaries


def test_missing_browser_skips_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("REQUIRE_BROWSER", raising=False)

    with pytest.raises(pytest.skip.Exception, match=INSTALL_HINT):
        _browser_binaries()


def test_missing_browser_fails_when_a_browser_is_required(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("REQUIRE_BROWSER", "1")

    with pytest.raises(pytest.fail.Exception, match=INSTALL_HINT):
        _browser_binaries()
