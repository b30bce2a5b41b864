"""One signed webhook request (Standard Webhooks), with the SSRF policy applied on the address
actually connected to.

The URL's host is resolved at delivery time and every address it resolves to is checked
(unless ``WEBHOOK_ALLOW_PRIVATE_NETWORKS``): loopback, private, link-local (cloud metadata),
shared, reserved and multicast addresses are refused. The request then connects to the checked
address itself, with the name in the ``Host`` header and in TLS (SNI and certificate check), so
a second DNS answer cannot swap the destination. Redirects are never followed (``http.client``
does not follow them; a 3xx is a failed attempt).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# Enough of an answer to read; the rest is ignored.
MAX_RESPONSE_BYTES = 64 * 1024
USER_AGENT = "fulfillment-webhooks/1"


class UnsafeDestination(Exception):
    """The URL may not be delivered to (scheme, or an address the SSRF policy refuses)."""


@dataclass(frozen=True)
class SendResult:
    """What one attempt got: an HTTP status or an error, and how long it took."""

    status_code: int | None
    latency_ms: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_secret() -> str:
    """A signing secret as the Standard Webhooks specification writes it: ``whsec_<base64>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(*, secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<msg_id>.<timestamp>.<body>">`` keyed with the secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def message_body(*, type_: str, timestamp: str, data: dict[str, Any]) -> bytes:
    return json.dumps(
        {"type": type_, "timestamp": timestamp, "data": data}, separators=(",", ":")
    ).encode()


def address_allowed(ip: str) -> bool:
    """A public unicast address (IPv4-mapped IPv6 judged as the IPv4 it maps)."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


def url_problem(url: str) -> str | None:
    """Why ``url`` is not a deliverable webhook URL on its face (scheme, host), or None. The
    addresses are checked at delivery time, as DNS may change."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "only http and https URLs are allowed"
    if not parts.hostname:
        return "the URL has no host"
    if parts.username or parts.password:
        return "credentials in the URL are not allowed"
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return None
    if not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS and not address_allowed(str(literal)):
        return "the URL points at a loopback, private, link-local or reserved address"
    return None


def resolve(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, checked address to connect to); UnsafeDestination if refused."""
    problem = url_problem(url)
    if problem:
        raise UnsafeDestination(problem)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise UnsafeDestination(f"cannot resolve {host}: {exc}") from None
    addresses = [str(info[4][0]) for info in infos]
    if not settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS:
        refused = [a for a in addresses if not address_allowed(a)]
        if refused:
            raise UnsafeDestination(
                f"{host} resolves to a loopback, private, link-local or reserved address"
            )
    if not addresses:
        raise UnsafeDestination(f"cannot resolve {host}")
    return parts.scheme, host, port, addresses[0]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a given address, with the TLS name (SNI, certificate) of the URL's host."""

    def __init__(self, address: str, port: int, *, server_name: str, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=ssl.create_default_context())
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_name)  # type: ignore[attr-defined]


def send(*, url: str, secret: str, msg_id: str, body: bytes) -> SendResult:
    """POST one signed message; never raises for the receiver's or the network's failures."""
    started = time.perf_counter()

    def result(status: int | None, error: str = "") -> SendResult:
        return SendResult(status, round((time.perf_counter() - started) * 1000, 2), error[:255])

    timeout = float(settings.WEBHOOK_TIMEOUT_SECONDS)
    try:
        scheme, host, port, address = resolve(url)
    except UnsafeDestination as exc:
        return result(None, f"refused: {exc}")
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default_port = 443 if scheme == "https" else 80
    timestamp = int(time.time())
    headers = {
        "Host": host if port == default_port else f"{host}:{port}",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(
            secret=secret, msg_id=msg_id, timestamp=timestamp, body=body
        ),
    }
    conn: http.client.HTTPConnection
    if scheme == "https":
        conn = _PinnedHTTPSConnection(address, port, server_name=host, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(MAX_RESPONSE_BYTES)
        return result(response.status)
    except TimeoutError:
        return result(None, f"timed out after {timeout:g} s")
    except ConnectionRefusedError:
        return result(None, "connection refused")
    except (OSError, http.client.HTTPException) as exc:
        return result(None, f"{exc.__class__.__name__}: {exc}")
    finally:
        conn.close()
