"""A scripted HTTP server in the test's own loop, for answers a real jobwarden never gives."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import WSCloseCode, web


@asynccontextmanager
async def fake_server(routes: Iterable[web.RouteDef]) -> AsyncIterator[str]:
    """Serve ``routes`` on a free loopback port; yields the base URL."""
    app = web.Application()
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def event(offset: int, job_id: str, state: str, kind: str | None = None, **data: Any) -> str:
    """One job CloudEvent as the server would send it."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(offset),
            "source": "jobwarden://fake",
            "type": f"jobwarden.job.{kind or state}",
            "subject": job_id,
            "time": "2026-01-01T00:00:00Z",
            "datacontenttype": "application/json",
            "data": {"job_id": job_id, "tool": "fake.tool", "state": state, "attempt": 1, **data},
        }
    )


def reset(offset: int) -> str:
    """A ``jobwarden.stream.reset`` CloudEvent: history before ``offset`` is gone."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": str(offset),
            "source": "jobwarden://fake",
            "type": "jobwarden.stream.reset",
            "subject": "",
            "time": "2026-01-01T00:00:00Z",
            "data": {"requested_since": 0, "first_retained": offset + 1},
        }
    )


def scripted(
    frames: Sequence[str | bytes], close: int = WSCloseCode.OK
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A websocket handler that sends ``frames`` (text, or binary for bytes), then closes with
    ``close``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for frame in frames:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        await ws.close(code=close)
        return ws

    return handler


def answer(body: Any, status: int = 200) -> Any:
    """A handler answering ``body`` (JSON, or text when it is a str) with ``status``."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if isinstance(body, str):
            return web.Response(text=body, status=status)
        return web.json_response(body, status=status)

    return handler
