"""Bare aiohttp reference servers for the HTTP benchmarks, each run in its own subprocess.

    python -m benchmarks.reference_servers http --port P     # JSON POST echo (http_submit)
    python -m benchmarks.reference_servers ws --port P       # websocket broadcast (ws_fanout)

``http``: one ``POST /v1/jobs`` route that decodes the body with msgspec and answers 200 with a JSON
body shaped like jobwarden's job response (about the same size). No middleware, no logging.

``ws``: ``GET /v1/events`` registers each websocket with its own bounded ``asyncio.Queue`` and a
writer task; ``POST /publish?n=N`` builds N events of the same shape and size as jobwarden's
CloudEvents (queued, running, succeeded for each job in turn, ``time`` set when built), encodes
each once and puts it into every socket's queue. A socket whose queue is full is closed with 1013,
as jobwarden does. ``GET /v1/health`` also says how many sockets are registered.

All of them run on the default asyncio loop, like ``jobwarden serve``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import socket
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import WSCloseCode, WSMsgType, web

QUEUE_SIZE = 1_000
"""Each socket's queue bound: jobwarden's default ``ws_queue``."""

_encoder = msgspec.json.Encoder()


class SubmitBody(msgspec.Struct, forbid_unknown_fields=True):
    """The same body jobwarden's ``POST /v1/jobs`` accepts."""

    tool: str
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    timeout_s: float | None = None
    idempotency_key: str | None = None


_submit_decoder = msgspec.json.Decoder(SubmitBody)


async def _submit(request: web.Request) -> web.Response:
    body = _submit_decoder.decode(await request.read())
    now = datetime.now(UTC)
    job = {
        "id": uuid.uuid4().hex,
        "tool": body.tool,
        "plugin": body.tool.partition(".")[0],
        "state": "succeeded",
        "input": body.input,
        "created_at": now,
        "attempt": 1,
        "result": body.input,
        "error": None,
        "progress": None,
        "owner": "anonymous",
        "started_at": now,
        "finished_at": now,
        "idempotency_key": body.idempotency_key,
        "timeout_s": body.timeout_s,
    }
    return web.Response(body=_encoder.encode({"job": job}), content_type="application/json")


async def _health(request: web.Request) -> web.Response:
    count = len(request.app[SUBSCRIBERS]) if SUBSCRIBERS in request.app else 0
    return web.Response(
        body=_encoder.encode({"status": "ok", "subscribers": count}),
        content_type="application/json",
    )


def http_app() -> web.Application:
    """The bare JSON POST reference."""
    app = web.Application()
    app.router.add_post("/v1/jobs", _submit)
    app.router.add_get("/v1/health", _health)
    return app


class _Subscriber:
    __slots__ = ("queue", "ws")

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)


SUBSCRIBERS: web.AppKey[set[_Subscriber]] = web.AppKey("subscribers")
_STATES = ("queued", "running", "succeeded")
_SOURCE = f"jobwarden://{socket.gethostname()}"


class _Publisher:
    """Numbers events and cycles each job through queued, running, succeeded."""

    def __init__(self) -> None:
        self.offsets = itertools.count(1)
        self.steps = itertools.cycle(_STATES)
        self.job_id = ""

    def event(self) -> bytes:
        state = next(self.steps)
        if state == "queued":
            self.job_id = uuid.uuid4().hex
        return _encoder.encode(
            {
                "id": str(next(self.offsets)),
                "source": _SOURCE,
                "type": "jobwarden.job." + state,
                "subject": self.job_id,
                "time": datetime.now(UTC),
                "data": {
                    "job_id": self.job_id,
                    "tool": "builtin.echo",
                    "state": state,
                    "attempt": 1,
                    "progress": None,
                    "message": None,
                    "result": {"text": "hi"} if state == "succeeded" else None,
                    "error": None,
                    "owner": "anonymous",
                },
                "specversion": "1.0",
                "datacontenttype": "application/json",
            }
        )


PUBLISHER: web.AppKey[_Publisher] = web.AppKey("publisher")


async def _events(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    sub = _Subscriber(ws)

    async def writer() -> None:
        while True:
            payload = await sub.queue.get()
            await ws.send_frame(payload, WSMsgType.TEXT)

    task = asyncio.create_task(writer())
    subscribers = request.app[SUBSCRIBERS]
    subscribers.add(sub)
    try:
        async for _ in ws:  # client frames are ignored; the loop ends when the socket closes
            pass
    finally:
        subscribers.discard(sub)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return ws


async def _publish(request: web.Request) -> web.Response:
    count = int(request.query.get("n", "3"))
    publisher = request.app[PUBLISHER]
    subscribers = request.app[SUBSCRIBERS]
    for _ in range(count):
        payload = publisher.event()
        for sub in tuple(subscribers):
            try:
                sub.queue.put_nowait(payload)
            except asyncio.QueueFull:
                subscribers.discard(sub)
                await sub.ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"behind")
    return web.Response(body=b'{"published":%d}' % count, content_type="application/json")


async def _close_sockets(app: web.Application) -> None:
    subscribers = app[SUBSCRIBERS]
    for sub in list(subscribers):
        await sub.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")


def ws_app() -> web.Application:
    """The bare websocket broadcast reference."""
    app = web.Application()
    subscribers: set[_Subscriber] = set()
    app[SUBSCRIBERS] = subscribers
    app[PUBLISHER] = _Publisher()
    app.router.add_get("/v1/events", _events)
    app.router.add_post("/publish", _publish)
    app.router.add_get("/v1/health", _health)
    app.on_shutdown.append(_close_sockets)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run one reference server until SIGINT or SIGTERM."""
    p = argparse.ArgumentParser(description="Reference servers for the HTTP benchmarks.")
    sub = p.add_subparsers(dest="kind", required=True)
    for kind in ("http", "ws"):
        cmd = sub.add_parser(kind)
        cmd.add_argument("--host", default="127.0.0.1")
        cmd.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    app = http_app() if args.kind == "http" else ws_app()
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=5.0,
        handle_signals=True,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
