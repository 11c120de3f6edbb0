"""The aiohttp application: ``create_app(supervisor, ...)`` to serve or to mount in another app."""

from __future__ import annotations

import anyio
from aiohttp import WSCloseCode, web

from jobwarden.actors.supervisor import Supervisor
from jobwarden.transport import dashboard, openapi, prometheus, routes_v1, seed_routes, streams
from jobwarden.transport.auth import KeyRing
from jobwarden.transport.context import (
    KEYS,
    SETTINGS,
    STARTED,
    SUPERVISOR,
    WEBSOCKETS,
    ServerSettings,
    now,
)
from jobwarden.transport.middleware import request_middleware


def create_app(
    supervisor: Supervisor, settings: ServerSettings | None = None, keys: KeyRing | None = None
) -> web.Application:
    """An application serving ``supervisor`` (which the caller starts and stops).

    With no keys (or an empty key ring) the API is open: bind it to loopback only.
    """
    settings = settings or ServerSettings()
    app = web.Application(
        middlewares=[request_middleware()], client_max_size=settings.max_body_bytes
    )
    app[SUPERVISOR] = supervisor
    app[SETTINGS] = settings
    app[KEYS] = keys if keys is not None else KeyRing()
    app[STARTED] = now()
    app[WEBSOCKETS] = set()
    app[streams.ENCODED] = streams.EncodedEvents()
    app[streams.SSE_STREAMS] = set()
    app[prometheus.PROMETHEUS] = prometheus.prometheus_registry(app)
    app[openapi.SPECS] = {}
    app.add_routes(routes_v1.routes)
    app.add_routes(streams.routes)
    app.add_routes(seed_routes.routes)
    app.add_routes(openapi.routes)
    app.add_routes(prometheus.routes)
    app.add_routes(dashboard.routes)
    app.on_shutdown.append(_close_streams)
    return app


async def _close_streams(app: web.Application) -> None:
    """On shutdown: websockets close with 1001, SSE streams end."""
    sockets: set[web.WebSocketResponse] = app[WEBSOCKETS]
    for ws in list(sockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
    sse: set[anyio.CancelScope] = app[streams.SSE_STREAMS]
    for scope in list(sse):
        scope.cancel()
