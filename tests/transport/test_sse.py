"""Live events as server-sent events (``Accept: text/event-stream``)."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from jobwarden.transport import ServerSettings
from tests.fakes import ReplayWatch
from tests.transport.conftest import (
    Server,
    SseEvent,
    auth,
    big_jobs_until_a_reader_is_dropped,
    expect_error,
    next_sse,
    next_sse_from,
    read_sse_until,
    serve,
    slow_socket,
    sse_start,
)

pytestmark = pytest.mark.anyio

SSE = {"Accept": "text/event-stream"}
TERMINAL_TYPES = {
    "jobwarden.job.succeeded",
    "jobwarden.job.failed",
    "jobwarden.job.timed_out",
    "jobwarden.job.cancelled",
}
# /v1/events streams never end on their own; a short heartbeat lets a stream whose client left
# notice it quickly, so a test's teardown does not wait out the default 15 s.
QUICK = ServerSettings(heartbeat_s=0.2)


def _terminal_of(job_id: str) -> Any:
    return lambda e: e.data["subject"] == job_id and e.event in TERMINAL_TYPES


def _ids(events: list[SseEvent]) -> list[int]:
    return [int(e.id or "0") for e in events]


async def test_job_stream_frames_id_event_and_data_then_ends() -> None:
    """Each SSE event has id, event and data lines; the job's stream ends after its last event."""
    async with serve() as srv:
        job = await srv.hold("alice", "sse")
        async with srv.http.get(
            srv.url(f"/v1/jobs/{job['id']}/events"), headers={**auth("alice"), **SSE}
        ) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/event-stream"
            assert resp.headers["Cache-Control"] == "no-cache"
            start = await sse_start(resp)
            raw: list[bytes] = []
            with anyio.fail_after(10):
                while (line := await resp.content.readline()) != b"\n":
                    raw.append(line)
            running = await next_sse(resp)
            srv.gates.open("sse")
            done = await next_sse(resp)
            end = await next_sse(resp)
    assert raw[0].startswith(b"id: ")
    assert raw[1] == b"event: jobwarden.job.queued\n"
    assert raw[2].startswith(b"data: {")
    assert len(raw) == 3
    assert running is not None
    assert done is not None
    assert (running.event, done.event) == ("jobwarden.job.running", "jobwarden.job.succeeded")
    assert done.data["id"] == done.id
    assert done.data["subject"] == job["id"]
    assert done.data["data"]["result"] == {"text": "sse"}
    assert start == 0
    assert int(raw[0][4:]) < int(running.id or 0) < int(done.id or 0)
    assert end is None


async def test_job_stream_of_a_finished_job_replays_and_ends() -> None:
    """A finished job's SSE stream replays its events and ends at once."""
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.fail", {}, wait=5)
        async with srv.http.get(
            srv.url(f"/v1/jobs/{job['id']}/events"), headers={**auth("alice"), **SSE}
        ) as resp:
            events = await read_sse_until(resp, _terminal_of(job["id"]))
            end = await next_sse(resp)
    assert [e.event for e in events] == [
        "jobwarden.job.queued",
        "jobwarden.job.running",
        "jobwarden.job.failed",
    ]
    assert end is None


async def test_a_job_stream_filtered_by_another_tool_ends_with_the_job() -> None:
    """A job's SSE stream whose tool filter names another tool sends nothing and ends after the
    job's terminal event; before, it stayed open."""
    store = ReplayWatch()
    async with serve(store=store) as srv:
        job = await srv.hold("alice", "other")
        async with srv.http.get(
            srv.url(f"/v1/jobs/{job['id']}/events?tool=builtin.echo"),
            headers={**auth("alice"), **SSE},
        ) as resp:
            await store.wait_replayed(job["id"])
            srv.gates.open("other")
            end = await next_sse(resp)
    assert end is None


async def test_last_event_id_resumes_a_job_stream_without_duplicates_or_gaps() -> None:
    """Reconnecting to a job's stream with Last-Event-ID yields exactly the events after it."""
    async with serve() as srv:
        job = await srv.submit("alice", "fake.progress", {"key": "resume"})
        await srv.gates.wait_entered("resume")
        path = srv.url(f"/v1/jobs/{job['id']}/events")
        async with srv.http.get(path, headers={**auth("alice"), **SSE}) as resp:
            first = [await next_sse(resp) for _ in range(3)]
        seen = [e for e in first if e is not None]
        srv.gates.open("resume")
        await srv.finished(job["id"])
        async with srv.http.get(
            path, headers={**auth("alice"), **SSE, "Last-Event-ID": seen[-1].id or ""}
        ) as resp:
            rest = await read_sse_until(resp, _terminal_of(job["id"]))
            end = await next_sse(resp)
    events = seen + rest
    assert [e.event for e in events] == [
        "jobwarden.job.queued",
        "jobwarden.job.running",
        "jobwarden.job.progress",
        "jobwarden.job.progress",
        "jobwarden.job.succeeded",
    ]
    assert _ids(events) == sorted(set(_ids(events)))
    assert end is None


async def test_since_and_last_event_id_take_every_offset_up_to_the_documented_bound() -> None:
    """since and Last-Event-ID accept 10**18 (the bound the 400 message names) and leading
    zeros: a finished job's stream then replays only what comes after them."""
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        path = f"/v1/jobs/{job['id']}/events"
        asks = [
            ("?since=1000000000000000000", {}),
            ("", {"Last-Event-ID": "1000000000000000000"}),
            ("?since=" + "0" * 30 + "2", {}),
        ]
        replays: list[list[str | None]] = []
        for query, headers in asks:
            async with srv.http.get(
                srv.url(path + query), headers={**auth("alice"), **SSE, **headers}
            ) as resp:
                assert resp.status == 200, await resp.text()
                events: list[str | None] = []
                while (event := await next_sse(resp)) is not None:
                    events.append(event.id)
                replays.append(events)
    assert replays == [[], [], ["3"]]


async def test_last_event_id_resumes_the_all_events_stream() -> None:
    """/v1/events with Last-Event-ID continues after that id: every event once, in order."""
    async with serve(settings=QUICK) as srv:
        for n in range(3):
            await srv.submit("alice", "builtin.echo", {"text": str(n)}, wait=5)
        async with srv.http.get(
            srv.url("/v1/events"), params={"since": "0"}, headers={**auth("alice"), **SSE}
        ) as resp:
            seen = await read_sse_until(resp, lambda e: e.id == "5")
        late = [await srv.submit("alice", "builtin.echo", {"text": str(n)}, wait=5) for n in (3, 4)]
        async with srv.http.get(
            srv.url("/v1/events"), headers={**auth("alice"), **SSE, "Last-Event-ID": "5"}
        ) as resp:
            rest = await read_sse_until(resp, _terminal_of(late[-1]["id"]))
    assert _ids(seen + rest) == list(range(1, 16))


async def test_every_stream_opens_with_the_offset_it_starts_after() -> None:
    """Before any event, an SSE stream sends an id line alone: the since asked for (query or
    Last-Event-ID, clamped to the newest event), else the newest event for /v1/events and 0 for
    a job's stream; the events that follow are exactly those after it."""
    async with serve(settings=QUICK) as srv:
        job = await srv.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        asks = [
            (f"/v1/jobs/{job['id']}/events", {}, 0),
            (f"/v1/jobs/{job['id']}/events?since=2", {}, 2),
            (f"/v1/jobs/{job['id']}/events", {"Last-Event-ID": "1"}, 1),
            (f"/v1/jobs/{job['id']}/events?since=99", {}, 3),
            ("/v1/events?since=1", {}, 1),
            ("/v1/events", {"Last-Event-ID": "2"}, 2),
            ("/v1/events?since=99", {}, 3),
        ]
        starts: list[tuple[int, int | None]] = []
        for path, headers, _ in asks:
            async with srv.http.get(
                srv.url(path), headers={**auth("alice"), **SSE, **headers}
            ) as resp:
                start = await sse_start(resp)
                first = await next_sse(resp) if start < 3 else None
                starts.append((start, int(first.id or 0) if first else None))
        async with srv.http.get(srv.url("/v1/events"), headers={**auth("alice"), **SSE}) as resp:
            now = await sse_start(resp)
            later = await srv.submit("alice", "builtin.echo", {"text": "later"})
            after_now = await next_sse(resp)
    assert starts == [(want, want + 1 if want < 3 else None) for _, _, want in asks]
    assert now == 3
    assert after_now is not None
    assert (after_now.id, after_now.data["subject"]) == ("4", later["id"])


async def test_a_stream_dropped_before_any_event_resumes_from_its_opening_id() -> None:
    """/v1/events (no since) dropped before its first event and resumed with Last-Event-ID =
    the id it opened with gets a job that ran meanwhile, each event exactly once."""
    async with serve(settings=QUICK) as srv:
        await srv.submit("alice", "builtin.echo", {"text": "before"}, wait=5)
        async with srv.http.get(srv.url("/v1/events"), headers={**auth("alice"), **SSE}) as resp:
            start = await sse_start(resp)
        meanwhile = await srv.submit("alice", "builtin.echo", {"text": "meanwhile"}, wait=5)
        after = await srv.submit("alice", "builtin.echo", {"text": "after"}, wait=5)
        headers = {**auth("alice"), **SSE, "Last-Event-ID": str(start)}
        async with srv.http.get(srv.url("/v1/events"), headers=headers) as resp:
            again = await sse_start(resp)
            events = await read_sse_until(resp, _terminal_of(after["id"]))
    assert (start, again) == (3, 3)
    assert _ids(events) == [4, 5, 6, 7, 8, 9]
    assert [e.data["subject"] for e in events[:3]] == [meanwhile["id"]] * 3


async def test_a_job_stream_dropped_before_any_event_resumes_from_its_opening_id() -> None:
    """A job's stream opened after its last event seen so far, dropped before any other, and
    resumed with Last-Event-ID = the id it opened with gets the job's end exactly once."""
    async with serve() as srv:
        job = await srv.hold("alice", "drop")
        path = srv.url(f"/v1/jobs/{job['id']}/events?since=2")
        async with srv.http.get(path, headers={**auth("alice"), **SSE}) as resp:
            start = await sse_start(resp)
        srv.gates.open("drop")
        await srv.finished(job["id"])
        headers = {**auth("alice"), **SSE, "Last-Event-ID": str(start)}
        async with srv.http.get(srv.url(f"/v1/jobs/{job['id']}/events"), headers=headers) as resp:
            again = await sse_start(resp)
            events: list[SseEvent] = []
            while (event := await next_sse(resp)) is not None:
                events.append(event)
    assert (start, again) == (2, 2)
    assert [(e.id, e.event) for e in events] == [("3", "jobwarden.job.succeeded")]


async def test_all_events_stream_honours_since_and_tool() -> None:
    """/v1/events?since=&tool= replays only that tool's events after since."""
    async with serve(settings=QUICK) as srv:
        echo = await srv.submit("alice", "builtin.echo", {"text": "e"}, wait=5)
        fail = await srv.submit("alice", "builtin.fail", {}, wait=5)
        async with srv.http.get(
            srv.url("/v1/events"),
            params={"since": "0", "tool": "builtin.fail"},
            headers={**auth("alice"), **SSE},
        ) as resp:
            events = await read_sse_until(resp, _terminal_of(fail["id"]))
    assert {e.data["subject"] for e in events} == {fail["id"]}
    assert len(events) == 3
    assert echo["id"] not in str([e.data for e in events])


async def test_all_events_stream_honours_state() -> None:
    """/v1/events?state=succeeded (DESIGN.md's table) streams only events in that state."""
    async with serve(settings=QUICK) as srv:
        first = await srv.submit("alice", "builtin.echo", {"text": "1"}, wait=5)
        await srv.submit("alice", "builtin.fail", {}, wait=5)
        last = await srv.submit("alice", "builtin.echo", {"text": "2"}, wait=5)
        async with srv.http.get(
            srv.url("/v1/events"),
            params={"since": "0", "state": "succeeded"},
            headers={**auth("alice"), **SSE},
        ) as resp:
            events = await read_sse_until(resp, _terminal_of(last["id"]))
        assert [e.data["subject"] for e in events] == [first["id"], last["id"]]
        assert {e.data["data"]["state"] for e in events} == {"succeeded"}


async def test_sse_streams_send_heartbeat_comments() -> None:
    """An idle SSE stream receives ``: heartbeat`` comment lines."""
    async with serve(settings=ServerSettings(heartbeat_s=0.05)) as srv:
        job = await srv.hold("alice", "idle")
        async with srv.http.get(
            srv.url(f"/v1/jobs/{job['id']}/events"), headers={**auth("alice"), **SSE}
        ) as resp:
            await read_sse_until(resp, lambda e: e.event == "jobwarden.job.running")
            with anyio.fail_after(10):
                line = await resp.content.readline()
            srv.gates.open("idle")
            await read_sse_until(resp, _terminal_of(job["id"]))
    assert line == b": heartbeat\n"


@pytest.mark.parametrize("accept", [None, "application/json", "text/html", "*/*"])
@pytest.mark.parametrize("path", ["/v1/events", "/v1/jobs/{job}/events"])
async def test_neither_websocket_nor_sse_is_400(accept: str | None, path: str) -> None:
    """An event route asked for neither a websocket nor SSE answers 400 invalid_request."""
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        headers = auth("alice") if accept is None else {**auth("alice"), "Accept": accept}
        async with srv.http.get(srv.url(path.format(job=job["id"])), headers=headers) as resp:
            await expect_error(resp, 400, "invalid_request")


async def test_a_client_leaving_an_sse_stream_is_no_server_error() -> None:
    """A client that disconnects from an SSE stream ends it quietly when the next event comes.

    The serve() harness fails the test if the server logged an unhandled error for it.
    """
    async with serve() as srv:
        async with srv.http.get(
            srv.url("/v1/events"), params={"since": "0"}, headers={**auth("alice"), **SSE}
        ) as resp:
            first = await srv.submit("alice", "builtin.echo", {"text": "1"}, wait=5)
            await read_sse_until(resp, _terminal_of(first["id"]))
        # The client is gone; the next events are written to a closed connection.
        await srv.submit("alice", "builtin.echo", {"text": "2"}, wait=5)
        with anyio.fail_after(5):
            await srv.stop()


async def test_server_shutdown_ends_open_sse_streams() -> None:
    """Stopping the runner ends open SSE streams promptly instead of waiting out its timeout."""
    async with serve() as srv:
        job = await srv.hold("alice", "forever")
        async with (
            srv.http.get(
                srv.url("/v1/events"), params={"since": "0"}, headers={**auth("alice"), **SSE}
            ) as everything,
            srv.http.get(
                srv.url(f"/v1/jobs/{job['id']}/events"), headers={**auth("alice"), **SSE}
            ) as one_job,
        ):
            await read_sse_until(everything, lambda e: e.event == "jobwarden.job.running")
            await read_sse_until(one_job, lambda e: e.event == "jobwarden.job.running")
            with anyio.fail_after(5):
                await srv.stop()
                assert await next_sse(everything) is None
                assert await next_sse(one_job) is None


async def test_a_slow_sse_reader_is_told_where_to_resume_while_a_fast_one_gets_everything() -> None:
    """A reader that stops reading is dropped once its buffer overflows: its stream ends with a
    jobwarden.stream.overflow event naming the last offset it was sent, from which a resume gets
    the rest; a fast reader meanwhile misses nothing."""
    async with serve(settings=ServerSettings(heartbeat_s=0.2, ws_queue=8)) as srv:
        # HTTP/1.0: the stream is the body up to the connection's end, no chunks to decode. A
        # line holds a whole event (a 256 KiB result): the reader's limit must take it.
        sock = await slow_socket(srv)
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        try:
            request = "GET /v1/events?since=0 HTTP/1.0\r\nAccept: text/event-stream\r\n"
            request += "".join(f"{name}: {value}\r\n" for name, value in auth("alice").items())
            writer.write(request.encode() + b"\r\n")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 200"), head
            fast_events, slow_events = await _stall_sse(srv, reader)
        finally:
            writer.close()
        *sent, notice = slow_events
        last = int(sent[-1].id or "0")
        assert notice.event == "jobwarden.stream.overflow"
        assert notice.data == {"resume_since": last}
        assert _ids(sent) == list(range(1, last + 1))
        assert _ids(fast_events) == list(range(1, len(fast_events) + 1))
        assert last < len(fast_events)
        async with srv.http.get(
            srv.url("/v1/events"), params={"since": str(last)}, headers={**auth("alice"), **SSE}
        ) as resumed:
            rest = await read_sse_until(resumed, lambda e: e.id == fast_events[-1].id)
        assert _ids(sent + rest) == _ids(fast_events)


async def _stall_sse(
    srv: Server, slow: asyncio.StreamReader
) -> tuple[list[SseEvent], list[SseEvent]]:
    """Submit jobs with 256 KiB results, each once a fast reader saw it end, until the server
    drops ``slow`` (which reads nothing meanwhile); then read all ``slow`` was sent.

    Returns (everything the fast reader got, everything the slow one got).
    """
    async with srv.http.get(
        srv.url("/v1/events"), params={"since": "0"}, headers={**auth("alice"), **SSE}
    ) as fast:
        fast_events = await big_jobs_until_a_reader_is_dropped(
            srv, lambda job_id: read_sse_until(fast, _terminal_of(job_id))
        )
    slow_events: list[SseEvent] = []
    while (event := await next_sse_from(slow)) is not None:
        slow_events.append(event)
    return fast_events, slow_events
