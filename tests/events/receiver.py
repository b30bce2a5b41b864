"""A real webhook receiver for the tests: an HTTP server on loopback, answering as told."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


@dataclass
class Receiver:
    """``answer(n, request)`` -> an HTTP status, or ``"hang"`` (no answer for a while)."""

    answer: Callable[[int, Received], int | str] = lambda n, r: 200
    hang_seconds: float = 8.0
    received: list[Received] = field(default_factory=list)
    port: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def ok(self) -> list[Received]:
        """The requests answered with a 2xx (recorded with their answer)."""
        return [r for r in self.received if r.headers.get("x-test-answer", "").startswith("2")]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            request = Received(
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
                time.time(),
            )
            with receiver.lock:
                receiver.received.append(request)
                n = len(receiver.received)
            answer = receiver.answer(n, request)
            if answer == "hang":
                time.sleep(receiver.hang_seconds)
                answer = 200
            request.headers["x-test-answer"] = str(answer)
            self.send_response(int(answer))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_receiver(receiver: Receiver | None = None, port: int = 0) -> Iterator[Receiver]:
    receiver = receiver or Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(receiver))
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
