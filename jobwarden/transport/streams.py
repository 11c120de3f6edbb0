"""Live event streams over a websocket or SSE, one bounded queue and one writer per connection."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import anyio
import structlog
from aiohttp import WSCloseCode, WSMsgType, web

from jobwarden.actors.states import JobState
from jobwarden.actors.subscription import Subscription
from jobwarden.errors import ErrorEnvelope, ErrorInfo, RequestError, SubscriberOverflow
from jobwarden.records import JobEvent, StreamEvent
from jobwarden.transport.auth import READ, Principal
from jobwarden.transport.context import (
    SETTINGS,
    SUPERVISOR,
    WEBSOCKETS,
    authorize,
    decode_json,
    int_in_range,
    int_param,
)
from jobwarden.transport.responses import ApiError
from jobwarden.transport.wire import (
    MAX_OFFSET,
    Ping,
    Subscribe,
    Subscribed,
    encoder,
    frame_decoder,
)

log = structlog.get_logger("jobwarden.stream")
routes = web.RouteTableDef()


@routes.get("/v1/events")
async def all_events(request: web.Request) -> web.StreamResponse:
    """Every event the caller may see, filtered by ``job``, ``tool``, ``since``."""
    principal = authorize(request, READ)
    first = _query_subscribe(request, job=request.query.get("job") or None)
    if first.job is not None:
        await request.app[SUPERVISOR].get(first.job, owner=principal.owner_filter)
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
    """The stream the query asks for; its bad values are refused here, before the response
    starts, while an error can still be an envelope (400, or 404 for an unknown tool)."""
    since = int_param(request, "since", 0, MAX_OFFSET)
    last_event_id = request.headers.get("Last-Event-ID")
    if since is None and last_event_id is not None:
        since = int_in_range(last_event_id, 0, MAX_OFFSET)
        if since is None:
            raise ApiError(400, "invalid_request", "Last-Event-ID must be an event id")
    state = request.query.get("state") or None
    if state is not None and state not in JobState.__members__.values():
        raise ApiError(400, "invalid_request", f"unknown state {state!r}")
    tool = request.query.get("tool") or None
    if tool is not None:
        request.app[SUPERVISOR].registry.tool(tool)
    return Subscribe(
        job=job,
        tool=tool,
        since=since,
        state=JobState(state) if state else None,
    )


async def _serve(
    request: web.Request, principal: Principal, first: Subscribe, *, fixed_job: str | None = None
) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        return await _websocket(request, principal, first, fixed_job)
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await _sse(request, principal, first)
    raise ApiError(400, "invalid_request", "use a websocket, or Accept: text/event-stream for SSE")


@asynccontextmanager
async def _subscription(
    request: web.Request, principal: Principal, sub: Subscribe
) -> AsyncIterator[Subscription]:
    """The connection's subscription: its buffer is the connection's bounded queue.

    Each connection's writer takes events from it in batches and writes them itself; a client
    that reads too slowly fills the buffer and gets ``SubscriberOverflow``.
    """
    async with request.app[SUPERVISOR].subscribe(
        job_id=sub.job,
        tool=sub.tool,
        since=sub.since,
        owner=principal.owner_filter,
        state=sub.state,
        buffer=request.app[SETTINGS].ws_queue,
    ) as events:
        yield events


class EncodedEvents:
    """Encodes each event once, however many connections send it: a FIFO cache of the latest
    events, bounded in number and in encoded bytes.

    The subscribers of a fan-out send the same events within a queue's length of each other, so
    the latest few thousand serve them. An event too big for the cache (over a sixteenth of
    ``max_bytes``) would push every other one out, so it gets a slot of its own instead, outside
    the budget: the latest such event, which its fan-out then encodes once. The events themselves
    stay referenced as long as their bytes, about as much memory again.
    """

    def __init__(self, size: int = 4_096, max_bytes: int = 16 << 20) -> None:
        self._size = size
        self._max_bytes = max_bytes
        self._max_event_bytes = max_bytes // 16
        self._bytes = 0
        self._cache: OrderedDict[str, tuple[StreamEvent, bytes]] = OrderedDict()
        self._big: tuple[StreamEvent, bytes] | None = None

    def __call__(self, event: StreamEvent) -> bytes:
        if self._big is not None and self._big[0] is event:
            return self._big[1]
        hit = self._cache.get(event.id)
        if hit is not None and hit[0] is event:
            return hit[1]
        data = encoder.encode(event)
        if len(data) > self._max_event_bytes:
            self._big = (event, data)
            return data
        if hit is not None:  # the same id, another object (read again from the store): replaced
            self._bytes -= len(hit[1])
        self._cache[event.id] = (event, data)
        self._bytes += len(data)
        while len(self._cache) > self._size or self._bytes > self._max_bytes:
            _, (_, dropped) = self._cache.popitem(last=False)
            self._bytes -= len(dropped)
        return data


ENCODED = web.AppKey("encoded_events", EncodedEvents)
SSE_STREAMS: web.AppKey[set[anyio.CancelScope]] = web.AppKey("sse_streams")


async def _sse(request: web.Request, principal: Principal, first: Subscribe) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)

    async def heartbeat() -> None:
        while True:
            await anyio.sleep(request.app[SETTINGS].heartbeat_s)
            await response.write(b": heartbeat\n\n")

    async def stream() -> None:
        encoded = request.app[ENCODED]
        try:
            async with _subscription(request, principal, first) as events:
                # An id with no data: EventSource takes it as its last event id without
                # dispatching anything, so it resumes from where this stream starts even when
                # the connection drops before the first event.
                await response.write(b"id: %d\n\n" % events.since)
                while batch := await events.batch():
                    for event in batch:
                        await response.write(
                            b"id: %s\nevent: %s\ndata: %s\n\n"
                            % (event.id.encode(), event.type.encode(), encoded(event))
                        )
        except SubscriberOverflow as exc:
            note = encoder.encode({"resume_since": exc.last_offset})
            await response.write(b"event: jobwarden.stream.overflow\ndata: %s\n\n" % note)
        except RequestError as exc:  # the store could not read the history asked for
            envelope = encoder.encode(ErrorEnvelope(error=exc.info()))
            await response.write(b"event: jobwarden.stream.error\ndata: %s\n\n" % envelope)
        except ConnectionError:
            raise
        except Exception:
            # Not the client's doing: logged once here, and the stream ends telling the client,
            # never a 500 written into a response already under way.
            log.exception("event stream failed", path=request.path)
            info = ErrorInfo(type="internal", message=INTERNAL, job_id=first.job)
            envelope = encoder.encode(ErrorEnvelope(error=info))
            await response.write(b"event: jobwarden.stream.error\ndata: %s\n\n" % envelope)

    streams = request.app[SSE_STREAMS]
    try:
        async with anyio.create_task_group() as tg:
            streams.add(tg.cancel_scope)  # cancelled when the server shuts down
            tg.start_soon(heartbeat)
            await stream()
            tg.cancel_scope.cancel()
        await response.write_eof()
    except* ConnectionError:
        pass  # the client went away: nothing left to tell it
    finally:
        streams.discard(tg.cancel_scope)
    return response


class _Writer:
    """One subscription's writer on a websocket, which the next client frame stops.

    It stops at once while it waits (for the previous writer, the store's replay, the next
    events), and after the frame it is writing otherwise: a write is never cancelled half-way,
    where it could not tell whether its frame went out. So once ``done`` is set, the offset of
    the last event this socket was sent is exact, and the next writer starts after it with no
    duplicate and no gap.
    """

    def __init__(self, previous: _Writer | None) -> None:
        self.previous = previous
        self.scope = anyio.CancelScope()
        self.sending = False
        self.stopped = False
        self.done = anyio.Event()

    def stop(self) -> None:
        """Stop now if it is waiting, else after the frame it is writing."""
        self.stopped = True
        if not self.sending:
            self.scope.cancel()

    async def wait_for_previous(self) -> None:
        """Return once the writer before this one (if any) has ended."""
        previous, self.previous = self.previous, None  # no chain of every writer kept alive
        if previous is not None:
            await previous.done.wait()


INTERNAL = "internal error; see the server log"
TEXT_FRAMES_ONLY = "a binary frame: send JSON in text frames"


async def _websocket(
    request: web.Request, principal: Principal, first: Subscribe, fixed_job: str | None
) -> web.StreamResponse:
    _check_origin(request)
    settings = request.app[SETTINGS]
    ws = web.WebSocketResponse(heartbeat=settings.heartbeat_s)
    await ws.prepare(request)
    sockets = request.app[WEBSOCKETS]
    sockets.add(ws)

    encoded = request.app[ENCODED]
    sent: int | None = None  # the offset of the last event sent, once one was

    # No lock around the writes: aiohttp writes each frame whole (and serialises compressed
    # ones itself), so this writer and the handler's replies share the socket frame by frame.
    async def write(sub: Subscribe, writer: _Writer) -> None:
        nonlocal sent
        try:
            async with _subscription(request, principal, sub) as events:
                # Where the stream starts, before its first event: a client that sees no event
                # before the connection drops still has an offset to resume from.
                if writer.stopped:
                    return
                writer.sending = True
                await ws.send_frame(encoder.encode(Subscribed(since=events.since)), WSMsgType.TEXT)
                if writer.stopped:
                    return
                writer.sending = False
                while batch := await events.batch():
                    if writer.stopped:
                        return
                    writer.sending = True
                    for event in batch:
                        await ws.send_frame(encoded(event), WSMsgType.TEXT)
                        if isinstance(event, JobEvent):
                            sent = event.offset
                        if writer.stopped:
                            return
                    writer.sending = False
        except SubscriberOverflow as exc:
            behind = f"behind; resume with since={exc.last_offset}".encode()
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=behind)
        except RequestError as exc:
            await ws.send_frame(encoder.encode(exc.info()), WSMsgType.TEXT)
        except ConnectionError:
            raise
        except Exception:
            # Not the client's doing (a store failing in a way it does not translate): logged
            # once here, and the client told, never a 500 written into the upgraded stream.
            log.exception("event stream failed", path=request.path)
            error = ErrorInfo(type="internal", message=INTERNAL, job_id=sub.job)
            await ws.send_frame(encoder.encode(error), WSMsgType.TEXT)
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"internal error")
        else:
            if sub.job is not None:
                await ws.close(code=WSCloseCode.OK, message=b"job finished")
            else:
                await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def stream(sub: Subscribe, writer: _Writer) -> None:
        try:
            with writer.scope, suppress(ConnectionError):
                await writer.wait_for_previous()
                if fixed_job is not None:
                    # The job's stream again: without a since, it goes on after what this
                    # socket was sent already instead of repeating it. Read only now that the
                    # writer before has ended: until then it may still be sending.
                    since = sub.since if sub.since is not None else sent
                    sub = Subscribe(job=fixed_job, tool=sub.tool, since=since, state=sub.state)
                await write(sub, writer)
        finally:
            writer.done.set()

    try:
        async with anyio.create_task_group() as tg:
            writer: _Writer | None = None
            if fixed_job is not None or first.job or first.tool or first.since is not None:
                writer = _Writer(None)
                tg.start_soon(stream, first, writer)
            with suppress(ConnectionError):
                async for message in ws:
                    if message.type is WSMsgType.BINARY:
                        error = ErrorInfo(type="invalid_request", message=TEXT_FRAMES_ONLY)
                        await ws.send_frame(encoder.encode(error), WSMsgType.TEXT)
                        continue
                    if message.type is not WSMsgType.TEXT:
                        continue  # ERROR: aiohttp has closed the socket, and the loop ends
                    try:
                        frame = decode_json(frame_decoder, message.data)
                    except ApiError as exc:
                        await ws.send_frame(encoder.encode(exc.info()), WSMsgType.TEXT)
                        continue
                    if isinstance(frame, Ping):
                        await ws.send_frame(b'{"type":"pong"}', WSMsgType.TEXT)
                        continue
                    if writer is not None:
                        writer.stop()
                    if isinstance(frame, Subscribe):
                        writer = _Writer(writer)
                        tg.start_soon(stream, frame, writer)
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
