"""`make loadtest`: headless Locust for a bounded time against a running system, then the gates.

    python loadtests/run_loadtest.py --host http://127.0.0.1:8000 --users 30 --time 60s

Reports: loadtests/reports/locust_*.csv and locust.html. Exit code 1 when a gate fails.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORTS = HERE / "reports"


def server_up(host: str) -> bool:
    try:
        with urllib.request.urlopen(f"{host}/health/ready/", timeout=3) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="http://127.0.0.1:8000")
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--spawn-rate", type=float, default=10)
    parser.add_argument("--time", default="60s", help="run time, e.g. 30s, 2m")
    parser.add_argument("--prefix", default=str(REPORTS / "locust"))
    args = parser.parse_args(argv)
    host = args.host.rstrip("/")
    if not server_up(host):
        print(
            f"No system answers at {host}/health/ready/. Start it with `make run` in another "
            "terminal (or pass --host).",
            file=sys.stderr,
        )
        return 2
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
    sys.path.insert(0, str(HERE))
    from gates import main as gates_main

    return gates_main(["--csv-prefix", args.prefix])


if __name__ == "__main__":
    sys.exit(main())
