"""Schemathesis, run as an outside client would run it, against a real gunicorn on the test
database: every check (``--checks all``) over every phase (examples, coverage, fuzzing and the
stateful phase, which follows the schema's links from a created product or order to the
operations on it), in both anonymous-read modes. Any finding fails the test and prints the
report. ``make fuzz`` runs the same with more examples (``FUZZ_EXAMPLES``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import issue_key
from tests.contract.live import live_server
from tests.factories import make_product

ST = str(Path(sys.executable).parent / "st")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))  # per operation and phase
PHASES = "examples,coverage,fuzzing,stateful"


def run_schemathesis(base_url: str, api_key: str, report_dir: Path) -> tuple[int, str]:
    """``st run`` over the whole API; returns its exit code and its report."""
    command = [
        ST,
        "--config-file",
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{base_url}/api/v1/openapi.json",
        "--checks",
        "all",
        "--phases",
        PHASES,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "1",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--header",
        f"Authorization: Bearer {api_key}",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(report_dir),
    ]
    # In a scratch directory: Schemathesis keeps a cache in its working directory.
    report_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=report_dir)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("anonymous_reads", [True, False], ids=["anonymous-reads", "keys-only"])
def test_schemathesis_finds_nothing_with_every_check_and_phase(
    anonymous_reads: bool, tmp_path: Path
) -> None:
    # given products with stock for the generated orders to hit, and an admin key
    for _ in range(3):
        make_product(stock=1_000_000)
    key = issue_key("admin", name="fuzzer")
    # when
    with live_server(anonymous_reads=anonymous_reads, log=tmp_path / "gunicorn.log") as base_url:
        code, report = run_schemathesis(base_url, key, tmp_path / "report")
    print(report)
    # then
    assert code == 0, report
    assert "✅ Stateful" in report, report  # the links were followed, not skipped
