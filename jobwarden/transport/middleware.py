"""The middlewares every request passes: access log with request id, then error envelopes."""

from __future__ import annotations

import itertools
import os
import time

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from jobwarden.errors import ErrorInfo, RequestError
from jobwarden.transport.auth import Principal
from jobwarden.transport.responses import HTTP_TYPES, envelope_response, request_error_response

log = structlog.get_logger("jobwarden.http")
PRINCIPAL_KEY = web.RequestKey("principal", Principal)


_ID_PREFIX = os.urandom(6).hex()
_serials = itertools.count()


def new_request_id() -> str:
    """A request id unique to this process (a random prefix, then a counter): no syscall each."""
    return f"{_ID_PREFIX}{next(_serials):010x}"


@web.middleware
async def access_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id to the log context and log one line per request when it ends.

    ``authorize`` binds the principal once it knows it, and the job routes the job's id and tool;
    all are unbound when the request ends.
    """
    request_id = request.headers.get("X-Request-ID") or new_request_id()
    began = time.perf_counter()
    status = 500
    tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-ID"] = request_id
        return response
    finally:
        principal = request.get(PRINCIPAL_KEY)
        route = request.match_info.route.resource
        log.info(
            "request",
            method=request.method,
            route=route.canonical if route is not None else request.path,
            status=status,
            principal=principal.name if principal is not None else None,
            duration_ms=round((time.perf_counter() - began) * 1000, 3),
        )
        structlog.contextvars.reset_contextvars(**tokens)
        structlog.contextvars.unbind_contextvars("principal", "job_id", "tool")


@web.middleware
async def error_envelopes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as an envelope with its status; tracebacks only reach the log."""
    try:
        return await handler(request)
    except RequestError as exc:
        return request_error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kind = HTTP_TYPES.get(exc.status, "invalid_request" if exc.status < 500 else "internal")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        headers = {k: v for k, v in exc.headers.items() if k in {"Allow", "Retry-After"}}
        return envelope_response(ErrorInfo(type=kind, message=message), exc.status, headers)
    except Exception:
        log.exception("unhandled error", path=request.path)
        info = ErrorInfo(type="internal", message="internal error; see the server log")
        return envelope_response(info, 500)
