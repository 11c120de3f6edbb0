"""Live events over websockets, with aiohttp's client and the independent `websockets` library."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import anyio
import msgspec
import pytest
from aiohttp import WSCloseCode, WSMsgType
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from jobwarden import Plugin, ToolContext
from jobwarden.transport import ServerSettings
from tests.fakes import Gates, ReplayWatch
from tests.transport.conftest import (
    ENVELOPE_FIELDS,
    KEYS,
    Server,
    auth,
    big_jobs_until_a_reader_is_dropped,
    expect_error,
    is_start,
    serve,
    slow_socket,
)

pytestmark = pytest.mark.anyio

Event = dict[str, Any]
CLOUDEVENT_FIELDS = {
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "data",
}
DATA_FIELDS = {"job_id", "tool", "state", "attempt", "progress", "message", "result", "error"}
TERMINAL_TYPES = {
    "jobwarden.job.succeeded",
    "jobwarden.job.failed",
    "jobwarden.job.timed_out",
    "jobwarden.job.cancelled",
}


def wsl(srv: Server, path: str, who: str | None = "alice", **kw: Any) -> connect:
    """A `websockets` client connection to ``path`` (no proxy, no compression)."""
    headers = auth(who) if who else None
    return connect(
        srv.ws_url(path),
        additional_headers=headers,
        proxy=None,
        compression=None,
        open_timeout=5,
        close_timeout=5,
        **kw,
    )


async def wsl_frame(ws: ClientConnection) -> Event:
    """The next frame of a `websockets` connection, decoded (bounded wait)."""
    with anyio.fail_after(10):
        frame = await ws.recv()
    decoded: Event = msgspec.json.decode(frame)
    return decoded


async def wsl_next(ws: ClientConnection) -> Event:
    """The next frame of a `websockets` connection other than a ``subscribed`` notice."""
    while is_start(frame := await wsl_frame(ws)):
        pass
    return frame


async def wsl_until(ws: ClientConnection, stop: Callable[[Event], bool]) -> list[Event]:
    """Frames of a `websockets` connection up to and including the first ``stop`` accepts."""
    got: list[Event] = []
    while True:
        got.append(await wsl_next(ws))
        if stop(got[-1]):
            return got


async def aio_frame(ws: aiohttp.ClientWebSocketResponse) -> Event:
    """The next text frame of an aiohttp websocket, decoded (bounded wait)."""
    msg = await ws.receive(timeout=10)
    assert msg.type is WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    decoded: Event = msgspec.json.decode(msg.data)
    return decoded


async def aio_next(ws: aiohttp.ClientWebSocketResponse) -> Event:
    """The next text frame of an aiohttp websocket other than a ``subscribed`` notice."""
    while is_start(frame := await aio_frame(ws)):
        pass
    return frame


async def aio_until(
    ws: aiohttp.ClientWebSocketResponse, stop: Callable[[Event], bool]
) -> list[Event]:
    """Frames of an aiohttp websocket up to and including the first ``stop`` accepts."""
    got: list[Event] = []
    while True:
        got.append(await aio_next(ws))
        if stop(got[-1]):
            return got


def finished(job_id: str) -> Callable[[Event], bool]:
    """Accepts the terminal event of ``job_id``."""
    return lambda e: e.get("subject") == job_id and e.get("type") in TERMINAL_TYPES


def offsets(events: list[Event]) -> list[int]:
    """The events' ids as integers."""
    return [int(e["id"]) for e in events]


def check_cloudevent(event: Event, job_id: str, tool: str) -> None:
    """Assert ``event`` is a CloudEvent 1.0 about ``job_id`` with every data member."""
    assert set(event) == CLOUDEVENT_FIELDS, event
    assert event["specversion"] == "1.0"
    assert event["datacontenttype"] == "application/json"
    assert event["source"].startswith("jobwarden://")
    assert event["subject"] == job_id
    assert event["type"] == f"jobwarden.job.{event['data']['state']}" or event["type"] in {
        "jobwarden.job.progress",
        "jobwarden.job.retrying",
    }
    assert event["id"].isdigit()
    assert set(event["data"]) >= DATA_FIELDS
    assert event["data"]["job_id"] == job_id
    assert event["data"]["tool"] == tool


# --- one job's events -------------------------------------------------------------------------


async def test_job_events_stream_from_the_start_then_close_1000_aiohttp() -> None:
    """/v1/jobs/{id}/events replays the job's events, streams the rest live, then closes 1000."""
    async with serve() as srv:
        job = await srv.hold("alice", "ws-job")
        async with srv.http.ws_connect(
            srv.ws_url(f"/v1/jobs/{job['id']}/events"), headers=auth("alice")
        ) as ws:
            replayed = [await aio_next(ws), await aio_next(ws)]
            srv.gates.open("ws-job")
            live = await aio_next(ws)
            closing = await ws.receive(timeout=10)
    events = [*replayed, live]
    for event in events:
        check_cloudevent(event, job["id"], "fake.gate")
    assert [e["type"] for e in events] == [
        "jobwarden.job.queued",
        "jobwarden.job.running",
        "jobwarden.job.succeeded",
    ]
    assert offsets(events) == sorted(offsets(events))
    assert live["data"]["result"] == {"text": "ws-job"}
    assert closing.type is WSMsgType.CLOSE
    assert closing.data == WSCloseCode.OK


async def test_subscribing_again_to_a_jobs_stream_repeats_nothing() -> None:
    """A subscribe frame without since on a job's endpoint goes on after the events this socket
    was sent, instead of replaying the job from its start."""
    async with serve() as srv:
        job = await srv.hold("alice", "again")
        async with srv.http.ws_connect(
            srv.ws_url(f"/v1/jobs/{job['id']}/events"), headers=auth("alice")
        ) as ws:
            first = [await aio_next(ws), await aio_next(ws)]
            await ws.send_json({"op": "subscribe"})
            # The new stream is in place, and starts after what this socket was sent.
            assert await aio_frame(ws) == {"type": "subscribed", "since": 2}
            srv.gates.open("again")
            rest = await aio_next(ws)
            closing = await ws.receive(timeout=10)
    assert [e["type"].rsplit(".", 1)[1] for e in [*first, rest]] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert closing.data == WSCloseCode.OK


BURST = 12
BURST_TEXT = 512 * 1024  # 12 x 512 KiB: more than the kernel's and the transport's buffers hold


class BurstIn(msgspec.Struct):
    """How many rounds of progress bursts to report."""

    rounds: int


def burst_plugin(gates: Gates) -> Plugin:
    """A plugin named ``burst`` whose tool reports BURST big progress events per round, each
    round then waiting at gate ``burst-<round>``."""
    plugin = Plugin("burst", version="0.1.0")

    @plugin.tool(timeout=30)
    async def rounds(inp: BurstIn, ctx: ToolContext) -> BurstIn:
        """Report the rounds' progress, waiting at each round's gate."""
        for r in range(inp.rounds):
            for i in range(BURST):
                await ctx.progress(i / BURST, f"{r}:{i}:".ljust(BURST_TEXT, "x"))
            await gates.pass_through(f"burst-{r}")
        return inp

    return plugin


def _last_of_round(r: int) -> Callable[[Event], bool]:
    """Accepts the last progress event of round ``r``."""
    return lambda e: str(e["data"]["message"]).startswith(f"{r}:{BURST - 1}:")


async def test_resubscribing_while_the_server_is_blocked_writing_repeats_nothing() -> None:
    """Subscribe frames (alone, or after an unsubscribe) handled while the job's stream is
    blocked mid-write to a client that stopped reading resume exactly after the last event the
    socket was sent: ids strictly increase, with no duplicate and no gap."""
    frames = (['{"op": "subscribe"}'], ['{"op": "unsubscribe"}', '{"op": "subscribe"}'])
    async with serve(plugins=lambda gates: [burst_plugin(gates)]) as srv:
        job = await srv.submit("alice", "burst.rounds", {"rounds": len(frames)})
        sock = await slow_socket(srv)
        got: list[Event] = []
        async with wsl(
            srv, f"/v1/jobs/{job['id']}/events", sock=sock, max_queue=1, max_size=None
        ) as ws:
            for r, sends in enumerate(frames):
                await srv.gates.wait_entered(f"burst-{r}")
                # Every event of the round is out, and the server's writer is stuck in the
                # middle of them: the client reads nothing while its buffers are full.
                await anyio.wait_all_tasks_blocked()
                for frame in sends:
                    await ws.send(frame)
                await anyio.wait_all_tasks_blocked()  # the frames were handled
                got += await wsl_until(ws, _last_of_round(r))
                srv.gates.open(f"burst-{r}")
            got += await wsl_until(ws, finished(job["id"]))
    ids = offsets(got)
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids
    assert [e["type"].removeprefix("jobwarden.job.") for e in got] == [
        "queued",
        "running",
        *["progress"] * (BURST * len(frames)),
        "succeeded",
    ]


async def test_job_events_with_progress_and_close_1000_websockets() -> None:
    """The `websockets` client sees queued, running, two progress events, succeeded, then 1000."""
    async with serve() as srv:
        job = await srv.submit("alice", "fake.progress", {"key": "prog"})
        await srv.gates.wait_entered("prog")
        async with wsl(srv, f"/v1/jobs/{job['id']}/events") as ws:
            before = await wsl_until(ws, lambda e: e["data"]["progress"] == 0.5)
            srv.gates.open("prog")
            after = await wsl_until(ws, finished(job["id"]))
            with pytest.raises(ConnectionClosed) as closed:
                await wsl_next(ws)
    events = before + after
    assert [e["type"].removeprefix("jobwarden.job.") for e in events] == [
        "queued",
        "running",
        "progress",
        "progress",
        "succeeded",
    ]
    assert [e["data"]["message"] for e in events[2:4]] == ["quarter", "half"]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000


async def test_events_of_a_finished_job_are_replayed_then_closed() -> None:
    """Connecting after the job ended still yields all its events, then a 1000 close."""
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.fail", {"message": "late"}, wait=5)
        async with wsl(srv, f"/v1/jobs/{job['id']}/events") as ws:
            events = await wsl_until(ws, finished(job["id"]))
            with pytest.raises(ConnectionClosed) as closed:
                await wsl_next(ws)
    assert [e["type"] for e in events] == [
        "jobwarden.job.queued",
        "jobwarden.job.running",
        "jobwarden.job.failed",
    ]
    assert events[-1]["data"]["error"]["type"] == "plugin_error"
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000


async def test_job_events_since_skip_what_the_client_already_has() -> None:
    """/v1/jobs/{id}/events?since=<id> starts after that event."""
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        async with srv.http.ws_connect(
            srv.ws_url(f"/v1/jobs/{job['id']}/events"), headers=auth("alice")
        ) as ws:
            everything = await aio_until(ws, finished(job["id"]))
        first = everything[0]["id"]
        async with srv.http.ws_connect(
            srv.ws_url(f"/v1/jobs/{job['id']}/events?since={first}"), headers=auth("alice")
        ) as ws:
            rest = await aio_until(ws, finished(job["id"]))
    assert len(everything) == 3
    assert rest == everything[1:]


# --- /v1/events and the client frames ---------------------------------------------------------


async def test_subscribe_ping_and_unsubscribe_frames() -> None:
    """subscribe/since replays then streams, ping answers pong, unsubscribe stops the events."""
    async with serve() as srv:
        one = await srv.submit("alice", "builtin.echo", {"text": "1"}, wait=5)
        async with wsl(srv, "/v1/events") as ws:
            await ws.send('{"op": "ping"}')
            assert await wsl_next(ws) == {"type": "pong"}
            await ws.send(msgspec.json.encode({"op": "subscribe", "since": 0}).decode())
            replayed = await wsl_until(ws, finished(one["id"]))
            two = await srv.submit("alice", "builtin.echo", {"text": "2"})
            live = await wsl_until(ws, finished(two["id"]))
            await ws.send('{"op": "unsubscribe"}')
            await ws.send('{"op": "ping"}')
            assert await wsl_next(ws) == {"type": "pong"}  # the unsubscribe was handled
            three = await srv.submit("alice", "builtin.echo", {"text": "3"}, wait=5)
            await ws.send('{"op": "ping"}')
            assert await wsl_next(ws) == {"type": "pong"}  # and nothing of job three came
            last = live[-1]["id"]
            await ws.send(msgspec.json.encode({"op": "subscribe", "since": int(last)}).decode())
            resumed = await wsl_until(ws, finished(three["id"]))
    assert offsets(replayed) == [1, 2, 3]
    assert offsets(live) == [4, 5, 6]
    assert offsets(resumed) == [7, 8, 9]
    assert {e["subject"] for e in resumed} == {three["id"]}


async def test_subscribe_filters_by_job_and_by_tool() -> None:
    """A subscribe frame with job or tool streams only the matching events."""
    async with serve() as srv:
        echo = await srv.submit("alice", "builtin.echo", {"text": "e"}, wait=5)
        fail = await srv.submit("alice", "builtin.fail", {}, wait=5)
        async with srv.http.ws_connect(srv.ws_url("/v1/events"), headers=auth("alice")) as ws:
            await ws.send_json({"op": "subscribe", "tool": "builtin.fail", "since": 0})
            by_tool = await aio_until(ws, finished(fail["id"]))
        async with srv.http.ws_connect(srv.ws_url("/v1/events"), headers=auth("alice")) as ws:
            await ws.send_json({"op": "subscribe", "job": echo["id"], "since": 0})
            by_job = await aio_until(ws, finished(echo["id"]))
            closing = await ws.receive(timeout=10)
        async with srv.http.ws_connect(
            srv.ws_url("/v1/events?since=0&tool=builtin.echo"), headers=auth("alice")
        ) as ws:
            by_query = await aio_until(ws, finished(echo["id"]))
    assert {e["subject"] for e in by_tool} == {fail["id"]}
    assert len(by_tool) == 3
    assert {e["subject"] for e in by_job} == {echo["id"]}
    assert len(by_job) == 3
    assert closing.type is WSMsgType.CLOSE
    assert closing.data == WSCloseCode.OK
    assert by_query == by_job


async def test_a_job_stream_filtered_by_another_tool_closes_1000_with_the_job() -> None:
    """A job's stream whose tool filter names another tool (job and tool in the query of
    /v1/events, tool in the query of /v1/jobs/{id}/events, or a subscribe frame) sends nothing
    and closes 1000 after the job's terminal event; before, it stayed open."""
    store = ReplayWatch()
    async with serve(store=store) as srv:
        closes = []
        paths = ["/v1/events?job={}&tool=builtin.echo", "/v1/jobs/{}/events?tool=builtin.echo"]
        for n, path in enumerate(paths):
            job = await srv.hold("alice", f"other-{n}")
            async with srv.http.ws_connect(
                srv.ws_url(path.format(job["id"])), headers=auth("alice")
            ) as ws:
                assert is_start(await aio_frame(ws))
                await store.wait_replayed(job["id"])
                srv.gates.open(f"other-{n}")
                closes.append(await ws.receive(timeout=10))
        job = await srv.hold("alice", "other-frame")
        async with srv.http.ws_connect(srv.ws_url("/v1/events"), headers=auth("alice")) as ws:
            await ws.send_json({"op": "subscribe", "job": job["id"], "tool": "builtin.echo"})
            assert is_start(await aio_frame(ws))
            await store.wait_replayed(job["id"])
            srv.gates.open("other-frame")
            closes.append(await ws.receive(timeout=10))
    assert [(c.type, c.data, c.extra) for c in closes] == 3 * [
        (WSMsgType.CLOSE, WSCloseCode.OK, "job finished")
    ]


async def test_malformed_frames_get_an_error_frame_and_the_connection_stays_usable() -> None:
    """Each malformed or binary client frame gets an error frame; ping and subscribe still work."""
    bad_frames = [
        "not json",
        "{",
        "[]",
        "42",
        '{"op": "bogus"}',
        '{"no_op": 1}',
        '{"op": "subscribe", "since": -1}',
        '{"op": "subscribe", "since": "abc"}',
        '{"op": "subscribe", "job": 5}',
        '{"op": "subscribe", "extra": true}',
        '{"op": "ping", "extra": true}',
        "\x00",
        "",
    ]
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        async with srv.http.ws_connect(srv.ws_url("/v1/events"), headers=auth("alice")) as ws:
            for frame in bad_frames:
                await ws.send_str(frame)
                error = await aio_next(ws)
                assert error["type"] == "invalid_request", (frame, error)
                assert error["message"], frame
                assert set(error) == ENVELOPE_FIELDS
                assert "Traceback" not in str(error)
            await ws.send_bytes(b'{"op": "ping"}')
            binary = await aio_next(ws)
            await ws.send_json({"op": "ping"})
            assert await aio_next(ws) == {"type": "pong"}
            await ws.send_json({"op": "subscribe", "since": 0})
            events = await aio_until(ws, finished(job["id"]))
    assert binary["type"] == "invalid_request"
    assert binary["message"] == "a binary frame: send JSON in text frames"
    assert set(binary) == ENVELOPE_FIELDS
    assert offsets(events) == [1, 2, 3]


async def test_a_frame_nested_too_deeply_gets_an_error_frame_and_the_socket_stays_open() -> None:
    """A frame nested past the decoder's stack is an invalid_request error frame, not a 500."""
    # The tag after the nested member: msgspec must descend into it before it knows the type.
    deep = '{"x": ' + "[" * 20_000 + "]" * 20_000 + ', "op": "ping"}'
    async with (
        serve() as srv,
        srv.http.ws_connect(srv.ws_url("/v1/events"), headers=auth("alice")) as ws,
    ):
        await ws.send_str(deep)
        error = await aio_next(ws)
        await ws.send_json({"op": "ping"})
        pong = await aio_next(ws)
    assert error["type"] == "invalid_request"
    assert error["message"] == "JSON nested too deeply"
    assert set(error) == ENVELOPE_FIELDS
    assert pong == {"type": "pong"}


async def test_subscribing_to_someone_elses_job_or_an_unknown_tool_is_an_error_frame() -> None:
    """A subscribe frame for another principal's job or an unknown tool gets an error frame."""
    async with serve() as srv:
        alices = await srv.hold("alice", "mine")
        async with wsl(srv, "/v1/events", who="bob") as ws:
            await ws.send(msgspec.json.encode({"op": "subscribe", "job": alices["id"]}).decode())
            not_found = await wsl_next(ws)
            await ws.send('{"op": "subscribe", "tool": "no.such", "since": 0}')
            no_tool = await wsl_next(ws)
            await ws.send('{"op": "ping"}')
            pong = await wsl_next(ws)
    assert not_found["type"] == "job_not_found"
    assert "data" not in not_found
    assert no_tool["type"] == "tool_not_found"
    assert pong == {"type": "pong"}


async def test_resume_after_a_dropped_connection_has_no_duplicates_and_no_gap() -> None:
    """Reconnecting with since=<last id seen> continues exactly where the dropped stream was."""
    async with serve() as srv:
        for n in range(3):
            await srv.submit("alice", "builtin.echo", {"text": str(n)}, wait=5)
        async with srv.http.ws_connect(
            srv.ws_url("/v1/events?since=0"), headers=auth("alice")
        ) as ws:
            seen = [await aio_next(ws) for _ in range(4)]
        # The connection is gone; more happens meanwhile.
        late = [await srv.submit("alice", "builtin.echo", {"text": str(n)}, wait=5) for n in (3, 4)]
        async with wsl(srv, f"/v1/events?since={seen[-1]['id']}") as ws:
            rest = await wsl_until(ws, finished(late[-1]["id"]))
            await ws.send('{"op": "ping"}')
            after = await wsl_next(ws)
    assert offsets(seen + rest) == list(range(1, 16))
    assert after == {"type": "pong"}


async def test_each_subscription_opens_with_a_subscribed_frame() -> None:
    """Every subscription, from the URL or a subscribe frame, first sends {"type": "subscribed",
    "since": N}: the since asked for (clamped to the newest event), else the newest event for
    /v1/events and 0 (or what the socket was sent) for a job's stream; its events follow it."""
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        async with srv.http.ws_connect(
            srv.ws_url(f"/v1/jobs/{job['id']}/events"), headers=auth("alice")
        ) as ws:
            job_stream = [await aio_frame(ws) for _ in range(4)]
        async with srv.http.ws_connect(
            srv.ws_url(f"/v1/jobs/{job['id']}/events?since=2"), headers=auth("alice")
        ) as ws:
            job_since = [await aio_frame(ws) for _ in range(2)]
        async with srv.http.ws_connect(
            srv.ws_url("/v1/events?since=1"), headers=auth("alice")
        ) as ws:
            by_url = await aio_frame(ws)
            replayed = [await aio_frame(ws) for _ in range(2)]
            await ws.send_json({"op": "subscribe"})
            from_now = await aio_frame(ws)
            await ws.send_json({"op": "subscribe", "since": 99})
            clamped = await aio_frame(ws)
            later = await srv.submit("alice", "builtin.echo", {"text": "later"})
            after = await aio_frame(ws)
    assert job_stream[0] == {"type": "subscribed", "since": 0}
    assert offsets(job_stream[1:]) == [1, 2, 3]
    assert job_since[0] == {"type": "subscribed", "since": 2}
    assert offsets(job_since[1:]) == [3]
    assert by_url == {"type": "subscribed", "since": 1}
    assert offsets(replayed) == [2, 3]
    assert from_now == {"type": "subscribed", "since": 3}
    assert clamped == {"type": "subscribed", "since": 3}
    assert (after["id"], after["subject"]) == ("4", later["id"])


async def test_a_subscription_dropped_before_any_event_resumes_from_its_since() -> None:
    """/v1/events subscribed without since, dropped before its first event and resumed with the
    since of its subscribed frame, gets a job that ran meanwhile, each event exactly once."""
    async with serve() as srv:
        await srv.submit("alice", "builtin.echo", {"text": "before"}, wait=5)
        async with wsl(srv, "/v1/events") as ws:
            await ws.send('{"op": "subscribe"}')
            start = await wsl_frame(ws)
        meanwhile = await srv.submit("alice", "builtin.echo", {"text": "meanwhile"}, wait=5)
        after = await srv.submit("alice", "builtin.echo", {"text": "after"}, wait=5)
        async with wsl(srv, f"/v1/events?since={start['since']}") as ws:
            again = await wsl_frame(ws)
            events = await wsl_until(ws, finished(after["id"]))
    assert start == again == {"type": "subscribed", "since": 3}
    assert offsets(events) == [4, 5, 6, 7, 8, 9]
    assert [e["subject"] for e in events[:3]] == [meanwhile["id"]] * 3


async def test_a_job_stream_dropped_before_any_event_resumes_from_its_since() -> None:
    """A job's stream opened after the events seen so far, dropped before any other and resumed
    with the since of its subscribed frame, gets the job's end exactly once, then 1000."""
    async with serve() as srv:
        job = await srv.hold("alice", "drop")
        path = f"/v1/jobs/{job['id']}/events"
        async with wsl(srv, f"{path}?since=2") as ws:
            start = await wsl_frame(ws)
        srv.gates.open("drop")
        await srv.finished(job["id"])
        async with wsl(srv, f"{path}?since={start['since']}") as ws:
            again = await wsl_frame(ws)
            events = await wsl_until(ws, finished(job["id"]))
            with pytest.raises(ConnectionClosed) as closed:
                await wsl_frame(ws)
    assert start == again == {"type": "subscribed", "since": 2}
    assert [(e["id"], e["type"]) for e in events] == [("3", "jobwarden.job.succeeded")]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000


async def test_events_stream_shows_only_the_callers_events() -> None:
    """Bob's /v1/events replays and streams bob's events only, even with since=0."""
    async with serve() as srv:
        alices = await srv.submit("alice", "builtin.echo", {"text": "a"}, wait=5)
        async with wsl(srv, "/v1/events?since=0", who="bob") as ws:
            await srv.submit("alice", "builtin.echo", {"text": "a2"}, wait=5)
            bobs = await srv.submit("bob", "builtin.echo", {"text": "b"}, wait=5)
            events = await wsl_until(ws, finished(bobs["id"]))
    assert {e["subject"] for e in events} == {bobs["id"]}
    assert alices["id"] not in str(events)


# --- handshake: origin and keys ---------------------------------------------------------------


def _upgrade_headers(**extra: str) -> dict[str, str]:
    return {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        **extra,
    }


@pytest.mark.parametrize("path", ["/v1/events?tool=no.such", "/v1/jobs/{job}/events?tool=no.such"])
async def test_an_unknown_tool_in_the_query_is_404_before_the_upgrade(path: str) -> None:
    """A websocket handshake whose tool filter names no tool is refused 404, not upgraded."""
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        url = srv.url(path.format(job=job["id"]))
        async with srv.http.get(url, headers={**auth("alice"), **_upgrade_headers()}) as resp:
            error = await expect_error(resp, 404, "tool_not_found")
    assert error["message"] == "no tool named 'no.such'"


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://127.0.0.1.evil.example", "https://localhost"]
)
async def test_a_foreign_origin_is_403_before_the_upgrade(origin: str) -> None:
    """A websocket handshake from a foreign Origin is refused with 403 forbidden, not upgraded."""
    async with serve() as srv:
        async with srv.http.get(
            srv.url("/v1/events"), headers={**auth("alice"), **_upgrade_headers(Origin=origin)}
        ) as resp:
            await expect_error(resp, 403, "forbidden")
        with pytest.raises(aiohttp.WSServerHandshakeError) as aio_refused:
            await srv.http.ws_connect(
                srv.ws_url("/v1/events"), headers=auth("alice"), origin=origin
            )
        with pytest.raises(InvalidStatus) as wsl_refused:
            async with wsl(srv, "/v1/events", origin=origin):
                pass
    assert aio_refused.value.status == 403
    assert wsl_refused.value.response.status_code == 403


async def test_same_host_and_allowed_origins_are_accepted() -> None:
    """The server's own origin, and an origin in allowed_origins, may open a websocket."""
    settings = ServerSettings(allowed_origins=frozenset({"https://app.example"}))
    async with serve(settings=settings) as srv:
        for origin in (f"http://{srv.host}", "https://app.example"):
            async with wsl(srv, "/v1/events", origin=origin) as ws:
                await ws.send('{"op": "ping"}')
                assert await wsl_next(ws) == {"type": "pong"}
            async with srv.http.ws_connect(
                srv.ws_url("/v1/events"), headers=auth("alice"), origin=origin
            ) as aio:
                await aio.send_json({"op": "ping"})
                assert await aio_next(aio) == {"type": "pong"}


async def test_api_key_query_parameter_authenticates_a_browser_websocket() -> None:
    """?api_key= works for websockets (browsers cannot set headers); a wrong one is 401."""
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.echo", {"text": "q"}, wait=5)
        path = f"/v1/jobs/{job['id']}/events?api_key={KEYS['alice']}"
        async with wsl(srv, path, who=None, origin=f"http://{srv.host}") as ws:
            events = await wsl_until(ws, finished(job["id"]))
        with pytest.raises(InvalidStatus) as refused:
            async with wsl(srv, "/v1/events?api_key=wrong-key-123", who=None):
                pass
        with pytest.raises(InvalidStatus) as missing:
            async with wsl(srv, "/v1/events", who=None):
                pass
    assert len(events) == 3
    assert refused.value.response.status_code == 401
    assert missing.value.response.status_code == 401


# --- heartbeats, shutdown, slow readers -------------------------------------------------------


async def test_the_server_sends_heartbeat_pings() -> None:
    """With heartbeat_s set, an idle websocket receives ping frames from the server."""
    async with (
        serve(settings=ServerSettings(heartbeat_s=0.05)) as srv,
        srv.http.ws_connect(srv.ws_url("/v1/events"), headers=auth("alice"), autoping=False) as ws,
    ):
        ping = await ws.receive(timeout=10)
        assert ping.type is WSMsgType.PING
        await ws.pong(ping.data)
        await ws.send_json({"op": "ping"})
        while (msg := await ws.receive(timeout=10)).type is WSMsgType.PING:
            await ws.pong(msg.data)
        assert msg.type is WSMsgType.TEXT
        assert msgspec.json.decode(msg.data) == {"type": "pong"}


async def test_server_shutdown_closes_open_websockets_with_1001() -> None:
    """Stopping the runner closes every open websocket, idle or streaming, with 1001."""
    async with serve() as srv:
        job = await srv.hold("alice", "forever")
        async with (
            srv.http.ws_connect(srv.ws_url("/v1/events?since=0"), headers=auth("alice")) as aio,
            wsl(srv, f"/v1/jobs/{job['id']}/events") as ws,
        ):
            await aio_until(aio, lambda e: e["type"] == "jobwarden.job.running")
            await wsl_until(ws, lambda e: e["type"] == "jobwarden.job.running")
            closes: dict[str, int | None] = {}

            async def aio_close() -> None:
                msg = await aio.receive(timeout=10)
                closes["aiohttp"] = msg.data if msg.type is WSMsgType.CLOSE else None

            async def wsl_close() -> None:
                try:
                    await wsl_next(ws)
                except ConnectionClosed as exc:
                    closes["websockets"] = exc.rcvd.code if exc.rcvd else None

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(aio_close)
                    tg.start_soon(wsl_close)
                    await srv.stop()
    assert closes == {"aiohttp": 1001, "websockets": 1001}


async def _stall(
    srv: Server, slow: ClientConnection, fast: aiohttp.ClientWebSocketResponse
) -> tuple[list[Event], list[Event]]:
    """Make ``slow`` (which then reads nothing) fall behind until the server drops it.

    Each job's succeeded event carries 256 KiB, so the slow socket's buffers fill after a few
    MiB and the server's writer for it blocks. Jobs are submitted one at a time, each only after
    ``fast`` got its terminal event, until the server drops the slow subscription (bounded).
    Returns (what the slow client read before it stalled, everything the fast one read).
    """
    first = await srv.submit("alice", "builtin.echo", {"text": "small"})
    fast_events = await aio_until(fast, finished(first["id"]))
    slow_events = await wsl_until(slow, finished(first["id"]))
    assert srv.sup.statistics().subscribers == 2
    fast_events += await big_jobs_until_a_reader_is_dropped(
        srv, lambda job_id: aio_until(fast, finished(job_id))
    )
    return slow_events, fast_events


async def test_a_slow_reader_is_closed_1013_while_a_fast_reader_gets_every_event() -> None:
    """A reader that stops reading is dropped (1013, resume with since) without slowing others.

    The slow client has a 4 KiB receive buffer and a one-message queue, and stops reading.
    """
    async with serve(settings=ServerSettings(ws_queue=8)) as srv:
        sock = await slow_socket(srv)
        async with (
            wsl(srv, "/v1/events?since=0", sock=sock, max_queue=1) as slow,
            srv.http.ws_connect(srv.ws_url("/v1/events?since=0"), headers=auth("alice")) as fast,
        ):
            slow_events, fast_events = await _stall(srv, slow, fast)
            # The fast client got every event, in order, while the slow one was stuck.
            assert offsets(fast_events) == list(range(1, len(fast_events) + 1))
            # Now the slow client reads: what was in flight, then the 1013 close.
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    slow_events.append(await wsl_next(slow))
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == WSCloseCode.TRY_AGAIN_LATER
        last = int(slow_events[-1]["id"])
        resume_at = re.search(r"since=(\d+)", closed.value.rcvd.reason)
        assert resume_at is not None, closed.value.rcvd.reason
        assert int(resume_at.group(1)) == last
        assert offsets(slow_events) == list(range(1, last + 1))
        assert last < len(fast_events)
        # Resuming with since=<last> delivers the rest: no gap, no duplicate.
        async with wsl(srv, f"/v1/events?since={last}", max_size=None) as resumed:
            rest = await wsl_until(resumed, lambda e: e["id"] == fast_events[-1]["id"])
        assert offsets(slow_events + rest) == offsets(fast_events)


async def test_a_reader_that_stops_reading_past_the_heartbeat_ends_without_a_close_frame() -> None:
    """A reader that stops reading longer than half the heartbeat (its queue far from full) is
    dropped without a close frame, 1006 as docs/events.md says, after the events already sent,
    whole and in order; resuming with since=<the last id it got> loses and repeats nothing."""
    # Its pong to the server's ping cannot come back (the client reads nothing, ping included),
    # so the heartbeat drops it.
    async with serve(settings=ServerSettings(heartbeat_s=0.05)) as srv:
        sock = await slow_socket(srv)
        async with wsl(srv, "/v1/events?since=0", sock=sock, max_queue=1) as slow:
            jobs = 0
            while srv.sup.statistics().subscribers == 1:
                assert jobs < 160, "the reader was never dropped"
                text = os.urandom(128 * 1024).hex() + str(jobs)
                await srv.submit("alice", "builtin.echo", {"text": text}, wait=5)
                jobs += 1
            got: list[Event] = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    got.append(await wsl_next(slow))
        assert closed.value.rcvd is None
        assert closed.value.sent is None
        last = int(got[-1]["id"])
        assert offsets(got) == list(range(1, last + 1))
        async with wsl(srv, f"/v1/events?since={last}", max_size=None) as resumed:
            rest = await wsl_until(resumed, lambda e: e["id"] == str(3 * jobs))
    assert offsets(got + rest) == list(range(1, 3 * jobs + 1))


async def test_a_client_vanishing_mid_send_ends_its_stream_quietly() -> None:
    """A websocket client that vanishes while the server is writing to it is no server error.

    The server's writer for the stalled client is blocked when its connection is aborted; the
    handler must end quietly (the serve() harness fails the test on any unhandled error), and
    the other client keeps streaming.
    """
    async with serve(settings=ServerSettings(ws_queue=8)) as srv:
        sock = await slow_socket(srv)
        async with (
            wsl(srv, "/v1/events?since=0", sock=sock, max_queue=1) as slow,
            srv.http.ws_connect(srv.ws_url("/v1/events?since=0"), headers=auth("alice")) as fast,
        ):
            await _stall(srv, slow, fast)
            slow.transport.abort()
            job = await srv.submit("alice", "builtin.echo", {"text": "after"})
            events = await aio_until(fast, finished(job["id"]))
    assert len(events) == 3
