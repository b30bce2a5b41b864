"""Request context: a request id (``X-Request-ID``, generated when absent, echoed back) that every
log line and pghistory event of the request carries."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pghistory
from django.http import HttpRequest, HttpResponse

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        with pghistory.context(request_id=request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
