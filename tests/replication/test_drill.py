"""The failover drill (loadtests/drill.py, `make drill`), shortened: kill -9 the primary under
order load, promote the synchronous standby, and every check of the drill holds."""

from __future__ import annotations

import pytest

from loadtests import drill


@pytest.mark.slow
def test_failover_loses_no_accepted_order_and_answers_only_201_or_503() -> None:
    figures = drill.run(drill.parse_args(["--duration", "16", "--kill-at", "6", "--clients", "6"]))

    assert drill.failures(figures) == [], figures
    assert figures["responses by status"].get("503", 0) > 0, figures  # the failure was felt
    assert figures["accepted (201)"] > 50, figures
    assert figures["503 window seconds"] < 15, figures
