"""Request context: a request id (``X-Request-ID``, generated when absent, echoed back) and the
actor, which every log line and pghistory event of the request carries (see fulfillment.audit)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pghistory
from django.http import HttpRequest, HttpResponse

from fulfillment.audit import request_actor

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        with pghistory.context(request_id=request_id, actor=request_actor(request)):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response
