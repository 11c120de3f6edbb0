"""Turning results and errors into HTTP responses: JSON bodies and error envelopes."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from jobwarden.errors import ErrorEnvelope, ErrorInfo, Overloaded, RequestError, StoreUnavailable
from jobwarden.transport.wire import encoder

# aiohttp's own HTTP errors (router, body size) mapped to envelope types.
HTTP_TYPES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "shutting_down",
}


def json_response(body: Any, status: int = 200) -> web.Response:
    """``body`` encoded with the shared msgspec encoder."""
    return web.Response(body=encoder.encode(body), status=status, content_type="application/json")


def envelope_response(
    info: ErrorInfo, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    """An error envelope ``{"error": {...}}`` with ``status``."""
    response = json_response(ErrorEnvelope(error=info), status)
    if headers:
        response.headers.update(headers)
    return response


def request_error_response(error: RequestError) -> web.Response:
    """The envelope for a refused request, with Retry-After or WWW-Authenticate where it applies."""
    headers = None
    if isinstance(error, Overloaded | StoreUnavailable):
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after_s)))}
    elif error.status == 401:  # RFC 9110: a 401 says how to authenticate
        headers = {"WWW-Authenticate": 'Bearer realm="jobwarden"'}
    return envelope_response(error.info(), error.status, headers)


class ApiError(RequestError):
    """A request error raised by the transport itself, with any envelope type and status."""

    def __init__(self, status: int, type: str, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.status = status  # type: ignore[misc]
        self.type = type  # type: ignore[misc]
