"""Following the server's events over a websocket, resuming with ``since`` when it drops."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass

import aiohttp
import anyio
import msgspec

from jobwarden.cli.client import ApiClient
from jobwarden.cli.outcomes import Unreachable, server_refused
from jobwarden.records import JobEvent

RECONNECT_FOR_S = 30.0  # how long a dropped stream keeps trying before the command gives up
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 2.0
RESET_TYPE = "jobwarden.stream.reset"
STARTED_TYPE = "subscribed"  # the frame saying where a subscription starts (not a CloudEvent)
ALL_EVENTS = "/v1/events"
# The query parameters with which /v1/events starts streaming by itself (docs/events.md).
STARTS_A_STREAM = frozenset({"job", "tool", "since"})


@dataclass(frozen=True)
class Frame:
    """One CloudEvent as the server sent it; ``event`` is set for job events, None for a reset."""

    raw: str
    offset: int
    event: JobEvent | None


@dataclass(frozen=True)
class Started:
    """A subscription's first frame: it delivers the events after offset ``since``."""

    since: int


@dataclass(frozen=True)
class StreamSpec:
    """Where to listen: ``path`` with query ``filters``, from offset ``since`` (None: from now)."""

    path: str
    filters: Mapping[str, str]
    since: int | None = None


def _parse(raw: str, base_url: str) -> Frame | Started | None:
    """A frame's CloudEvent, where a subscription starts, None for another control frame, or the
    server's error as an exception."""
    try:
        frame = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    if not isinstance(frame, dict):
        return None
    if frame.get("type") == STARTED_TYPE:
        since = frame.get("since")
        # bool is an int too, and an offset is never negative: anything else is no offset.
        if type(since) is int and since >= 0:
            return Started(since)
        return None
    if "specversion" not in frame:
        # A subscription the server refused arrives as a bare error envelope body.
        if "message" in frame and frame.get("type") not in {None, "pong"}:
            raise server_refused(base_url, frame)
        return None
    if frame.get("type") == RESET_TYPE:
        return Frame(raw, int(frame["id"]), None)
    event = msgspec.json.decode(raw, type=JobEvent)
    return Frame(raw, event.offset, event)


async def follow(
    api: ApiClient,
    spec: StreamSpec,
    on_reconnect: Callable[[int | None], None] = lambda since: None,
) -> AsyncGenerator[Frame]:
    """The stream's events until the server closes it normally (a job's stream after its end).

    A dropped connection, a server going away or a "too slow, resume" close reconnects with
    ``since`` = the last offset seen (the last event's, or before any event where the server said
    the stream starts), telling ``on_reconnect``: None only when the server said neither, so the
    stream can only start again from now. A server unreachable at the very
    start, or for ``RECONNECT_FOR_S`` after a drop, raises ``Unreachable``; a refusal (an error
    envelope or a refused handshake) is a ``CommandError`` at once.
    """
    since = spec.since
    connected = False
    backoff = FIRST_BACKOFF_S
    gave_up_at = 0.0
    while True:
        params = dict(spec.filters)
        if since is not None:
            params["since"] = str(since)
        try:
            ws = await api.websocket(spec.path, params)
        except Unreachable:
            if not connected or anyio.current_time() >= gave_up_at:
                raise
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            continue
        connected, backoff = True, FIRST_BACKOFF_S
        async with ws:
            if spec.path == ALL_EVENTS and not STARTS_A_STREAM & params.keys():
                # Without a job, tool or since in the URL, /v1/events waits for the client to say
                # what it wants, filters included: the URL's state= alone starts nothing. (A
                # job's stream starts by itself, and a subscribe frame would restart it.)
                await ws.send_str(msgspec.json.encode({"op": "subscribe", **params}).decode())
            async for message in ws:
                if message.type is aiohttp.WSMsgType.ERROR:
                    break
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                frame = _parse(message.data, api.base_url)
                if isinstance(frame, Started):
                    since = frame.since
                elif frame is not None:
                    since = frame.offset
                    yield frame
        if ws.close_code == aiohttp.WSCloseCode.OK:
            return
        gave_up_at = anyio.current_time() + RECONNECT_FOR_S
        on_reconnect(since)
