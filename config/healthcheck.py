"""Container health checks (the ``healthcheck`` of docker-compose.yml), exit 0 when healthy::

    python -m config.healthcheck web      # gunicorn answers /health/live/ on $PORT
    python -m config.healthcheck worker   # a Procrastinate worker beat within STALLED_WORKER_SECONDS

``web`` sends the Host header of the first ``ALLOWED_HOSTS`` entry, so the check keeps working
when ``ALLOWED_HOSTS`` is the real domain (Django answers 400 to any other Host). ``worker``
fails as soon as no worker has updated its heartbeat in ``procrastinate_workers`` for
``STALLED_WORKER_SECONDS`` (a hung or disconnected worker), not only when the database is down.
"""

from __future__ import annotations

import http.client
import os
import sys


def probe_host(allowed_hosts: list[str]) -> str:
    """A Host header ``ALLOWED_HOSTS`` accepts: its first concrete name (``.example.com`` allows
    ``example.com``); ``localhost`` when any host is allowed or the list is empty."""
    for entry in allowed_hosts:
        name = entry.strip().lstrip(".")
        if name and name != "*":
            return name
    return "localhost"


def web() -> int:
    from django.conf import settings

    port = int(os.environ.get("PORT", "8000"))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", "/health/live/", headers={"Host": probe_host(settings.ALLOWED_HOSTS)})
        status = conn.getresponse().status
    except OSError as exc:
        print(f"web: no answer on port {port}: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if status != 200:
        print(f"web: /health/live/ answered {status}", file=sys.stderr)
        return 1
    return 0


def worker() -> int:
    import django

    django.setup()
    from fulfillment.health import check_workers

    result = check_workers()
    if not result["ok"]:
        print(
            f"worker: no heartbeat within {result.get('fresh_within_s')} s: {result}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    checks = {"web": web, "worker": worker}
    if len(argv) != 1 or argv[0] not in checks:
        print(__doc__, file=sys.stderr)
        return 2
    return checks[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
