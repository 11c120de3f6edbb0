"""``follow``, the client's event stream: resuming with ``since`` and giving up in the end."""

from __future__ import annotations

import anyio
import pytest
from aiohttp import WSCloseCode, web

from jobwarden.cli import event_stream
from jobwarden.cli.client import ApiClient
from jobwarden.cli.event_stream import StreamSpec, follow
from jobwarden.cli.outcomes import Unreachable
from tests.cli.fake_server import event, fake_server

pytestmark = pytest.mark.anyio


async def test_a_dropped_stream_resumes_after_the_last_event() -> None:
    """A "too slow" close (1013) reconnects with since=<last offset>, and nothing repeats."""
    asked: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        asked.append(request.query.get("since"))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if len(asked) == 1:
            await ws.send_str(event(7, "j1", "running"))
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER)
        else:
            await ws.send_str(event(8, "j1", "succeeded"))
            await ws.close(code=WSCloseCode.OK)
        return ws

    resumed: list[int | None] = []
    async with fake_server([web.get("/v1/events", handler)]) as url, ApiClient(url, None) as api:
        spec = StreamSpec("/v1/events", {"tool": "fake.tool"})
        offsets = [frame.offset async for frame in follow(api, spec, resumed.append)]
    assert offsets == [7, 8]
    assert asked == [None, "7"]
    assert resumed == [7]


async def test_a_stream_dropped_before_any_event_resumes_where_it_started() -> None:
    """A connection that ends before any event reconnects with since=<the offset the server said
    the stream starts after>, not from now."""
    asked: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        asked.append(request.query.get("since"))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if len(asked) == 1:
            await ws.send_str('{"type":"subscribed","since":5}')
            await ws.close(code=WSCloseCode.GOING_AWAY)
        else:
            await ws.send_str('{"type":"subscribed","since":5}')
            await ws.send_str(event(6, "j1", "succeeded"))
            await ws.close(code=WSCloseCode.OK)
        return ws

    resumed: list[int | None] = []
    async with fake_server([web.get("/v1/events", handler)]) as url, ApiClient(url, None) as api:
        spec = StreamSpec("/v1/events", {"tool": "fake.tool"})
        offsets = [frame.offset async for frame in follow(api, spec, resumed.append)]
    assert offsets == [6]
    assert asked == [None, "5"]
    assert resumed == [5]


async def test_a_server_gone_for_good_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that went away and stays unreachable past the reconnect window raises
    Unreachable, after the events it did send."""
    monkeypatch.setattr(event_stream, "RECONNECT_FOR_S", 0.2)
    sites: list[web.TCPSite] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(event(3, "j1", "running"))
        await sites[0].stop()  # no more connections: reconnecting finds nobody listening
        await ws.close(code=WSCloseCode.GOING_AWAY)
        return ws

    app = web.Application()
    app.add_routes([web.get("/v1/jobs/j1/events", handler)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    offsets: list[int] = []
    try:
        sites.append(web.TCPSite(runner, "127.0.0.1", 0))
        await sites[0].start()
        url = "http://{}:{}".format(*runner.addresses[0][:2])
        async with ApiClient(url, None) as api:
            with pytest.raises(Unreachable, match=f"cannot connect to {url}"):
                async for frame in follow(api, StreamSpec("/v1/jobs/j1/events", {})):
                    offsets.append(frame.offset)
    finally:
        await runner.cleanup()
    assert offsets == [3]


async def test_a_server_unreachable_from_the_start_fails_at_once() -> None:
    """With no server at all there is nothing to resume: the first failure raises."""
    async with fake_server([]) as url:
        gone = url
    async with ApiClient(gone, None) as api:
        with pytest.raises(Unreachable):
            async for _ in follow(api, StreamSpec("/v1/events", {})):
                pass


async def test_a_state_filter_alone_subscribes_with_it() -> None:
    """/v1/events with only a state filter starts nothing by itself, so the client subscribes
    with a frame that carries the filter."""
    frames: list[object] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        frames.append(await ws.receive_json())
        await ws.send_str(event(4, "j1", "running"))
        await ws.close(code=WSCloseCode.OK)
        return ws

    async with fake_server([web.get("/v1/events", handler)]) as url, ApiClient(url, None) as api:
        with anyio.fail_after(10):
            spec = StreamSpec("/v1/events", {"state": "running"})
            offsets = [frame.offset async for frame in follow(api, spec)]
    assert frames == [{"op": "subscribe", "state": "running"}]
    assert offsets == [4]
