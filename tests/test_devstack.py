from __future__ import annotations

import psycopg
import redis

from config.devstack.servers import DevStack, pid_alive


def test_devstack_starts_reuses_and_stops_without_leaving_processes(tmp_path):
    # given a fresh directory
    stack = DevStack(base=tmp_path / "stack")

    # when started
    env = stack.start()
    pids = stack.pids()

    # then both servers answer
    assert pids["postgres"] and pids["redis"]
    with psycopg.connect(env["DATABASE_URL"].replace("postgres://", "postgresql://")) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert redis.Redis.from_url(env["REDIS_URL"]).ping()
    assert sorted(stack.started) == ["postgres", "redis"]

    # when a second launcher starts the same directory, it reuses the running servers
    again = DevStack(base=tmp_path / "stack")
    assert again.start() == env
    assert again.pids() == pids
    assert again.started == []

    # when stopped, no process is left behind
    again.stop()
    assert not pid_alive(pids["postgres"])
    assert not pid_alive(pids["redis"])
    assert stack.pids() == {"postgres": None, "redis": None}
    assert not _processes_using(tmp_path)

    # and it starts again on the same data
    env2 = stack.start()
    assert stack.pids()["postgres"] is not None
    stack.stop()
    assert not _processes_using(tmp_path)
    assert env2["DATABASE_URL"].endswith("/fulfillment")


def _processes_using(path) -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmdline:
            found.append(proc.info["pid"])
    return found
