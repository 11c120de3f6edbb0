"""The middleware every request passes: request id and access log, and error envelopes."""

from __future__ import annotations

import itertools
import os
import re
import time
from contextlib import suppress

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from jobwarden.errors import ErrorInfo, RequestError
from jobwarden.logs import bind_request, bound_principal
from jobwarden.transport.responses import HTTP_TYPES, envelope_response, request_error_response

_ID_PREFIX = os.urandom(6).hex()
_serials = itertools.count()


def new_request_id() -> str:
    """A request id unique to this process (a random prefix, then a counter): no syscall each."""
    return f"{_ID_PREFIX}{next(_serials):010x}"


_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _safe_request_id(text: str) -> bool:
    """Whether a client's X-Request-ID is kept: 1 to 128 of ``A-Z a-z 0-9 . _ : -``.

    Anything else (empty, longer, other characters, bytes that are not UTF-8, which aiohttp
    hands over as lone surrogates) is replaced by a new id, as if none was sent: the id goes
    into every log line of the request and back into a response header.
    """
    return _REQUEST_ID.fullmatch(text) is not None


def request_middleware() -> Middleware:
    """The middleware: binds a request id to the log context, turns every error into an
    envelope with its status (tracebacks only reach the log), and logs one line per request.

    One middleware rather than two: each costs aiohttp a wrapper and a coroutine per request.
    ``authorize`` binds the principal once it knows it (the line's ``principal`` is read from
    there), and the job routes the job's id and tool. Nothing is unbound: aiohttp runs each
    request in a task of its own, whose context (a copy of the connection's) ends with it, so
    the next request on the connection starts without them. The logger is bound here, when the
    app is made (after logging is configured), not looked up again on every request.
    """
    log = structlog.get_logger("jobwarden.http").bind()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-ID")
        if request_id is None or not _safe_request_id(request_id):
            request_id = new_request_id()
        began = time.perf_counter()
        status = 500
        bind_request(request_id)
        try:
            try:
                response = await handler(request)
            except RequestError as exc:
                response = request_error_response(exc)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                response = _http_error_response(exc)
            except Exception:
                log.exception("unhandled error", path=request.path)
                info = ErrorInfo(type="internal", message="internal error; see the server log")
                response = envelope_response(info, 500)
            status = response.status
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            route = request.match_info.route.resource
            # A line that cannot be written (stderr gone) must not turn the answer into a 500,
            # and there is nowhere left to say so.
            with suppress(Exception):
                log.info(
                    "request",
                    method=request.method,
                    route=route.canonical if route is not None else request.path,
                    status=status,
                    # Read from the log context, where ``authorize`` binds it: a lookup in the
                    # request's own storage would cost two Python calls more per request.
                    principal=bound_principal(),
                    # Milliseconds to three decimals, as whole microseconds over 1,000: half
                    # the work of round(ms, 3), which rounds through the decimal digits.
                    duration_ms=round((time.perf_counter() - began) * 1_000_000) / 1000,
                )

    return middleware


def _http_error_response(exc: web.HTTPException) -> web.Response:
    """aiohttp's own HTTP errors (router, body size) as envelopes with their status."""
    kind = HTTP_TYPES.get(exc.status, "invalid_request" if exc.status < 500 else "internal")
    message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    headers = {k: v for k, v in exc.headers.items() if k in {"Allow", "Retry-After"}}
    return envelope_response(ErrorInfo(type=kind, message=message), exc.status, headers)
