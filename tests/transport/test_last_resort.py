"""The last-resort error handler: a route an embedding program adds that raises gets an envelope,
never a traceback, while aiohttp's redirects pass through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from jobwarden import Supervisor, builtin
from jobwarden.transport import create_app
from tests.transport.conftest import KEYRING, check_envelope, served

pytestmark = pytest.mark.anyio


class Broken(RuntimeError):
    """Raised by a route on purpose."""


async def _broken(request: web.Request) -> web.Response:
    raise Broken("secret detail from deep inside")


async def _moved(request: web.Request) -> web.Response:
    raise web.HTTPFound("/v1/health")


@asynccontextmanager
async def with_extra_routes() -> AsyncIterator[str]:
    """jobwarden's app with two routes an embedding program added; yields its base URL."""
    async with Supervisor(plugins=[builtin]) as sup:
        app = create_app(sup, None, KEYRING)
        app.router.add_get("/extra/broken", _broken)
        app.router.add_get("/extra/moved", _moved)
        async with served(app) as base:
            yield base


async def test_an_unexpected_exception_is_a_500_envelope_and_a_logged_traceback() -> None:
    """A route that raises answers 500 with type internal and the request id, and logs the
    traceback: the client sees neither the exception's text nor a stack."""
    with capture_logs() as logs:
        async with (
            with_extra_routes() as base,
            aiohttp.ClientSession() as http,
            http.get(f"{base}/extra/broken", headers={"X-Request-ID": "req-broken-1"}) as resp,
        ):
            text = await resp.text()
            status, request_id = resp.status, resp.headers.get("X-Request-ID")
    assert (status, request_id) == (500, "req-broken-1")
    envelope = check_envelope(json.loads(text), "internal")
    assert envelope["message"] == "internal error; see the server log"
    assert "secret detail" not in text
    assert "Traceback" not in text
    [unhandled] = [e for e in logs if e["event"] == "unhandled error"]
    assert unhandled["path"] == "/extra/broken"
    assert unhandled["log_level"] == "error"
    assert unhandled.get("exc_info") is True
    [line] = [e for e in logs if e["event"] == "request" and e["route"] == "/extra/broken"]
    assert line["status"] == 500


async def test_a_redirect_raised_by_a_route_passes_through() -> None:
    """An aiohttp redirect (a 3xx HTTPException) is an answer, not an error: it goes out as is."""
    async with (
        with_extra_routes() as base,
        aiohttp.ClientSession() as http,
        http.get(f"{base}/extra/moved", allow_redirects=False) as resp,
    ):
        status, location = resp.status, resp.headers.get("Location")
    assert (status, location) == (302, "/v1/health")
