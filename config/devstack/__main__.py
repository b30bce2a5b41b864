"""Command line of the dev stack (``python -m config.devstack``)::

python -m config.devstack start    # start (or reuse) and print the URLs as env lines
python -m config.devstack status
python -m config.devstack stop
python -m config.devstack run      # what `make run` does: the whole system, Ctrl-C stops it
"""

from __future__ import annotations

import sys

from config.devstack.launcher import run
from config.devstack.servers import DevStack


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "status"
    if cmd == "run":
        return run(argv[1:])
    stack = DevStack()
    if cmd == "start":
        for key, value in stack.start().items():
            print(f"{key}={value}")
    elif cmd == "stop":
        stack.stop()
    elif cmd == "status":
        for name, pid in stack.pids().items():
            print(f"{name}: {'running, pid %d' % pid if pid else 'stopped'}")
        if stack.pg_running() and stack.redis_running():
            for key, value in stack.env().items():
                print(f"{key}={value}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
