"""The load test's own API keys: one per role, each with a request limit no load test reaches.

Every simulated user of a role sends the same key, so with the default per-key limit
(``THROTTLE_RATE_KEY``, 1,200 requests/min) a load test would mostly measure the throttle. The
keys made here carry their own ``throttle_rate`` (``LOADTEST_THROTTLE_RATE``, default
``1000000/min``) instead. `make locust` and `make loadtest` run this first, against the database
the system uses (the dev stack, or ``DATABASE_URL``):

    python -m loadtests.keys            # create or reuse them; prints where they are kept

They are kept, like the demo keys, in ``.devstack/loadtest-keys.json`` (mode 0600) and reused
while they are valid and carry that rate; otherwise they are replaced.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("viewer", "operator", "admin")
DEFAULT_RATE = "1000000/min"
KEY_NAME = "loadtest-{role}"


def key_file() -> Path:
    return Path(os.environ.get("DEVSTACK_DIR", ROOT / ".devstack")) / "loadtest-keys.json"


def load_test_rate() -> str:
    return os.environ.get("LOADTEST_THROTTLE_RATE") or DEFAULT_RATE


def read_keys(path: Path | None = None) -> dict[str, str]:
    """The stored raw keys by role (empty when there are none yet)."""
    try:
        keys = json.loads((path or key_file()).read_text())
    except (OSError, ValueError):
        return {}
    return {role: str(raw) for role, raw in keys.items()} if isinstance(keys, dict) else {}


def ensure_load_test_keys(*, rate: str | None = None, path: Path | None = None) -> dict[str, str]:
    """The raw load-test key of every role, created (or replaced) where missing, invalid or
    carrying another rate. Needs Django set up on the system's database."""
    import pghistory

    from fulfillment.selectors.api_keys import api_key_for
    from fulfillment.services.api_keys import api_key_replace

    rate = rate or load_test_rate()
    path = path or key_file()
    stored = read_keys(path)
    keys: dict[str, str] = {}
    with pghistory.context(command="loadtests.keys", actor="command:loadtests.keys"):
        for role in ROLES:
            name = KEY_NAME.format(role=role)
            raw = stored.get(role, "")
            api_key = api_key_for(raw_key=raw) if raw else None
            if (
                api_key is None
                or api_key.name != name
                or api_key.role != role
                or api_key.throttle_rate != rate
            ):
                raw = api_key_replace(name=name, role=role, throttle_rate=rate).raw_key
            keys[role] = raw
    if keys != stored:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(keys, indent=2))
        path.chmod(0o600)
    return keys


def main() -> int:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    ensure_load_test_keys()
    print(
        f"[loadtest] keys {', '.join(KEY_NAME.format(role=r) for r in ROLES)} "
        f"(limit {load_test_rate()} each) in {key_file()}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
