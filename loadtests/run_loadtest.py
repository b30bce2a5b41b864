"""`make loadtest`: headless Locust for a bounded time against a running system, then the gates;
`make locust`: the Locust web UI against it.

    python -m loadtests.run_loadtest --host http://127.0.0.1:8000 --users 30 --time 60s
    python -m loadtests.run_loadtest --host http://127.0.0.1:8000 --web-ui

Both first create or reuse the load-test keys (``loadtests/keys.py``: one per role, with a limit
no load test reaches) unless ``LOCUST_API_KEY`` names the key to use, and check that the system
accepts them. Reports: loadtests/reports/locust_*.csv and locust.html. Exit code 1 when a gate
fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from loadtests import keys
from loadtests.gates import main as gates_main

HERE = Path(__file__).resolve().parent
REPORTS = HERE / "reports"


def server_up(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"{host}/health/ready/", timeout=3) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def key_accepted(host: str, key: str) -> int:
    """The status the system answers a read with ``key``: 200 when it knows the key."""
    req = urllib.request.Request(
        f"{host}/api/v1/products/?limit=1", headers={"Authorization": f"Bearer {key}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def prepare_keys(host: str) -> bool:
    """Create or reuse the load-test keys (unless LOCUST_API_KEY is set) and check the system
    at ``host`` accepts them, i.e. uses the database they were written to."""
    if os.environ.get("LOCUST_API_KEY"):
        key = os.environ["LOCUST_API_KEY"]
    else:
        keys.main()
        key = keys.read_keys()["admin"]
    status = key_accepted(host, key)
    if status != 200:
        print(
            f"[loadtest] {host} answers {status} to the load test's API key (LOCUST_API_KEY, "
            "else the load-test keys of this checkout's database). For another system, create "
            "a key there (`manage.py create_api_key --name loadtest --role admin "
            f"--throttle-rate {keys.load_test_rate()}`) and pass it as LOCUST_API_KEY.",
            file=sys.stderr,
        )
        return False
    return True


def web_ui(host: str) -> int:
    """Become the Locust web UI on http://127.0.0.1:8089 with ``host`` preset (until Ctrl-C)."""
    locust = str(Path(sys.executable).parent / "locust")
    sys.stdout.flush()
    os.execv(
        locust,
        [locust, "-f", str(HERE / "locustfile.py"), "--host", host]
        + ["--web-host", "127.0.0.1", "--web-port", "8089"],
    )
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--time", default="60s", help="run time, e.g. 30s, 2m")
    parser.add_argument("--prefix", default=str(REPORTS / "locust"))
    parser.add_argument("--web-ui", action="store_true", help="the web UI instead (make locust)")
    args = parser.parse_args(argv)
    host = args.host.rstrip("/")
    if not server_up(host):
        print(
            f"No system answers at {host}/health/ready/. Start it with `make run` in another "
            "terminal (or pass --host).",
            file=sys.stderr,
        )
        return 2
    if not prepare_keys(host):
        return 2
    if args.web_ui:
        return web_ui(host)
    Path(args.prefix).parent.mkdir(parents=True, exist_ok=True)
    print(f"[loadtest] {args.users} users for {args.time} against {host}", flush=True)
    locust = Path(sys.executable).parent / "locust"
    code = subprocess.run(
        [
            str(locust),
            "-f",
            str(HERE / "locustfile.py"),
            "--headless",
            "--host",
            host,
            "-u",
            str(args.users),
            "-r",
            str(args.spawn_rate),
            "-t",
            args.time,
            "--csv",
            args.prefix,
            "--html",
            f"{args.prefix}.html",
            "--only-summary",
            "--stop-timeout",
            "10",
            "--exit-code-on-error",
            "0",
        ],
        check=False,
    ).returncode
    if code != 0:
        print(f"[loadtest] locust exited with {code}", file=sys.stderr)
        return code
    print("[loadtest] correctness gates:", flush=True)
    return gates_main(["--csv-prefix", args.prefix])


if __name__ == "__main__":
    sys.exit(main())
