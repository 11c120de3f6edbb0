"""Live event streams over a websocket or SSE, one bounded queue and one writer per connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import msgspec
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from jobwarden.errors import RequestError, SubscriberOverflow
from jobwarden.records import StreamEvent
from jobwarden.transport.auth import READ, Principal
from jobwarden.transport.context import SETTINGS, SUPERVISOR, WEBSOCKETS, authorize
from jobwarden.transport.responses import ApiError
from jobwarden.transport.wire import Ping, Subscribe, encoder, frame_decoder

log = structlog.get_logger("jobwarden.stream")
routes = web.RouteTableDef()
Send = Callable[[StreamEvent, bytes], Awaitable[None]]


@routes.get("/v1/events")
async def all_events(request: web.Request) -> web.StreamResponse:
    """Every event the caller may see, filtered by ``job``, ``tool``, ``since``."""
    principal = authorize(request, READ)
    first = _query_subscribe(request, job=request.query.get("job"))
    return await _serve(request, principal, first)


@routes.get("/v1/jobs/{id}/events")
async def job_events(request: web.Request) -> web.StreamResponse:
    """One job's events from the start (or ``since``), then live; closed after the terminal one."""
    principal = authorize(request, READ)
    job_id = request.match_info["id"]
    await request.app[SUPERVISOR].get(job_id, owner=principal.owner_filter)
    first = _query_subscribe(request, job=job_id)
    return await _serve(request, principal, first, fixed_job=job_id)


def _query_subscribe(request: web.Request, *, job: str | None) -> Subscribe:
    raw = request.query.get("since") or request.headers.get("Last-Event-ID")
    since = None
    if raw is not None:
        if not raw.isdigit():
            raise ApiError(400, "invalid_request", "since / Last-Event-ID must be an event id")
        since = int(raw)
    return Subscribe(job=job, tool=request.query.get("tool") or None, since=since)


async def _serve(
    request: web.Request, principal: Principal, first: Subscribe, *, fixed_job: str | None = None
) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request, principal, first, fixed_job)
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await _sse(request, principal, first)
    raise ApiError(400, "invalid_request", "use a websocket, or Accept: text/event-stream for SSE")


async def _pump(request: web.Request, principal: Principal, sub: Subscribe, send: Send) -> None:
    """Copy matching events into ``send`` until the subscription ends.

    The subscription's buffer is this connection's bounded queue and this loop its only writer:
    a client that reads too slowly fills the buffer and gets ``SubscriberOverflow``.
    """
    sup = request.app[SUPERVISOR]
    async with sup.subscribe(
        job_id=sub.job,
        tool=sub.tool,
        since=sub.since,
        owner=principal.owner_filter,
        buffer=request.app[SETTINGS].ws_queue,
    ) as events:
        async for event in events:
            await send(event, encoder.encode(event))


async def _sse(request: web.Request, principal: Principal, first: Subscribe) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)

    async def send(event: StreamEvent, payload: bytes) -> None:
        await response.write(
            b"id: %s\nevent: %s\ndata: %s\n\n" % (event.id.encode(), event.type.encode(), payload)
        )

    async def heartbeat() -> None:
        while True:
            await anyio.sleep(request.app[SETTINGS].heartbeat_s)
            await response.write(b": heartbeat\n\n")

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            try:
                await _pump(request, principal, first, send)
            except SubscriberOverflow as exc:
                note = encoder.encode({"resume_since": exc.last_offset})
                await response.write(b"event: jobwarden.stream.overflow\ndata: %s\n\n" % note)
            tg.cancel_scope.cancel()
        await response.write_eof()
    except ConnectionResetError:
        pass
    return response


async def _websocket(
    request: web.Request, principal: Principal, first: Subscribe, fixed_job: str | None
) -> web.StreamResponse:
    _check_origin(request)
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(heartbeat=settings.heartbeat_s)
    await ws.prepare(request)
    sockets = request.app[WEBSOCKETS]
    sockets.add(ws)
    lock = anyio.Lock()

    async def send(event: StreamEvent, payload: bytes) -> None:
        async with lock:
            await ws.send_frame(payload, WSMsgType.TEXT)

    async def stream(sub: Subscribe) -> None:
        try:
            await _pump(request, principal, sub, send)
        except SubscriberOverflow as exc:
            await ws.close(
                code=WSCloseCode.TRY_AGAIN_LATER,
                message=f"behind; since={exc.last_offset}".encode(),
            )
            return
        except RequestError as exc:
            async with lock:
                await ws.send_str(encoder.encode(exc.info()).decode())
            return
        if sub.job is not None or fixed_job is not None:
            await ws.close(code=WSCloseCode.OK, message=b"job finished")
        else:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    try:
        async with anyio.create_task_group() as tg:
            current = anyio.CancelScope()

            async def run(sub: Subscribe, scope: anyio.CancelScope) -> None:
                with scope:
                    await stream(sub)

            if fixed_job is not None or first.job or first.tool or first.since is not None:
                tg.start_soon(run, first, current)
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                try:
                    frame = frame_decoder.decode(message.data)
                except msgspec.DecodeError as exc:
                    async with lock:
                        await ws.send_str(
                            encoder.encode({"type": "error", "message": str(exc)}).decode()
                        )
                    continue
                if isinstance(frame, Ping):
                    async with lock:
                        await ws.send_str('{"type":"pong"}')
                    continue
                current.cancel()
                current = anyio.CancelScope()
                if isinstance(frame, Subscribe):
                    if fixed_job is not None:
                        frame = Subscribe(job=fixed_job, tool=frame.tool, since=frame.since)
                    tg.start_soon(run, frame, current)
            tg.cancel_scope.cancel()
    finally:
        sockets.discard(ws)
    return ws


def _check_origin(request: web.Request) -> None:
    """Refuse cross-site websocket hijacking: a browser's Origin must be this host or allowed."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    allowed = request.app[SETTINGS].allowed_origins
    host = origin.split("://", 1)[-1]
    if origin not in allowed and host != request.host:
        raise ApiError(403, "forbidden", f"origin {origin!r} is not allowed")
