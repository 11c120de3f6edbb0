"""A store that refuses writes or cannot read a row, over HTTP: 503 envelopes (with Retry-After),
stream errors, other jobs unharmed."""

from __future__ import annotations

import sqlite3
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSCloseCode, WSMsgType

from jobwarden import JobState
from jobwarden.errors import JobNotFinished
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.memory import MemoryStore
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import FullStore
from tests.transport.conftest import (
    ENVELOPE_FIELDS,
    auth,
    check_envelope,
    expect_error,
    next_sse,
    receive_json,
    serve,
)

pytestmark = pytest.mark.anyio


async def test_a_submit_the_store_refuses_is_a_503_envelope() -> None:
    """POST /v1/jobs answers 503 shutting_down (reason store_unavailable) with Retry-After."""
    store = FullStore()
    async with serve(store=store) as server:
        before = await server.submit("alice", "builtin.echo", {"text": "kept"}, wait=5)
        store.fail_puts = True
        async with server.http.post(
            server.url("/v1/jobs"),
            json={"tool": "builtin.echo", "input": {"text": "refused"}},
            headers=auth("alice"),
        ) as resp:
            status, body = resp.status, await resp.json()
            retry_after = str(resp.headers.get("Retry-After"))
        store.fail_puts = False
        after = await server.submit("alice", "builtin.echo", {"text": "after"}, wait=5)
        listed = await server.get_json("alice", "/v1/jobs")
    assert status == 503
    assert int(retry_after) >= 1
    error = body["error"]
    assert (error["type"], error["details"]) == ("shutting_down", {"reason": "store_unavailable"})
    assert "disk is full" in error["message"]
    assert (before["state"], after["state"]) == ("succeeded", "succeeded")
    assert [j["id"] for j in listed["jobs"]] == [after["id"], before["id"]]


async def test_a_cancel_the_store_refuses_is_a_503_and_the_job_runs_on() -> None:
    """DELETE /v1/jobs/{id} answers 503 when the cancel cannot be stored; the job is untouched."""
    store = FullStore(fail_state=JobState.CANCELLED)
    async with serve(store=store, concurrency=1) as server:
        running = await server.hold("alice", "first")
        queued = await server.submit("alice", "fake.gate", {"key": "second"})
        async with server.http.delete(
            server.url(f"/v1/jobs/{queued['id']}"), headers=auth("alice")
        ) as resp:
            status, body = resp.status, await resp.json()
        store.fail_state = None
        server.gates.open("first")
        server.gates.open("second")
        done = [await server.finished(job["id"]) for job in (running, queued)]
    assert status == 503
    assert body["error"]["details"] == {"reason": "store_unavailable"}
    assert [job["state"] for job in done] == ["succeeded", "succeeded"]


async def _damage(path: Path, job_id: str, *, record: bool) -> None:
    """Overwrite the job's record, or its last event, with bytes no jobwarden wrote."""
    with sqlite3.connect(path) as db:
        if record:
            db.execute("UPDATE jobs SET record = x'00' WHERE id = ?", (job_id,))
        else:
            db.execute(
                "UPDATE events SET body = x'00' WHERE offset ="
                " (SELECT max(offset) FROM events WHERE job_id = ?)",
                (job_id,),
            )


async def test_a_damaged_record_is_a_503_for_the_reads_that_return_it(tmp_path: Path) -> None:
    """A job whose stored record cannot be read answers 503 store_unavailable on GET, and so
    does a listing holding it; other jobs still read, and new jobs still run."""
    path = tmp_path / "jobs.db"
    async with serve(store=SqliteStore(path)) as server:
        kept = await server.submit("alice", "builtin.echo", {"text": "kept"}, wait=5)
        damaged = await server.submit("alice", "builtin.echo", {"text": "damaged"}, wait=5)
        await _damage(path, damaged["id"], record=True)
        for route in (f"/v1/jobs/{damaged['id']}", "/v1/jobs"):
            async with server.http.get(server.url(route), headers=auth("alice")) as resp:
                error = await expect_error(resp, 503, "shutting_down")
            assert error["details"] == {"reason": "store_unavailable"}
            assert f"{path} holds a job record that cannot be read" in error["message"]
        assert (await server.job("alice", kept["id"]))["state"] == "succeeded"
        after = await server.submit("alice", "builtin.echo", {"text": "after"}, wait=5)
    assert after["state"] == "succeeded"


async def test_a_damaged_event_ends_an_sse_replay_with_a_stream_error(tmp_path: Path) -> None:
    """An SSE replay reaching an event the store cannot read sends the events before it, then
    ``jobwarden.stream.error`` with a store_unavailable envelope, and ends."""
    path = tmp_path / "jobs.db"
    async with serve(store=SqliteStore(path)) as server:
        job = await server.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        await _damage(path, job["id"], record=False)
        async with server.http.get(
            server.url(f"/v1/jobs/{job['id']}/events"),
            headers=auth("alice") | {"Accept": "text/event-stream"},
        ) as resp:
            seen = [await next_sse(resp) for _ in range(4)]
    assert [event.event if event else None for event in seen] == [
        "jobwarden.job.queued",
        "jobwarden.job.running",
        "jobwarden.stream.error",
        None,
    ]
    assert seen[2] is not None
    error = check_envelope(seen[2].data, "shutting_down")
    assert error["details"] == {"reason": "store_unavailable"}
    assert error["job_id"] == job["id"]
    assert f"{path} holds an event that cannot be read" in error["message"]


async def test_a_damaged_event_is_an_error_frame_on_a_websocket(tmp_path: Path) -> None:
    """A websocket replay reaching an event the store cannot read sends the events before it,
    then the store_unavailable error as a frame; the socket stays open for another subscribe."""
    path = tmp_path / "jobs.db"
    async with serve(store=SqliteStore(path)) as server:
        job = await server.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        await _damage(path, job["id"], record=False)
        async with server.http.ws_connect(
            server.ws_url(f"/v1/events?job={job['id']}"), headers=auth("alice")
        ) as ws:
            frames = [await receive_json(ws) for _ in range(3)]
            await ws.send_json({"op": "ping"})
            pong = await receive_json(ws)
    assert [frame.get("type") for frame in frames[:2]] == [
        "jobwarden.job.queued",
        "jobwarden.job.running",
    ]
    assert frames[2]["type"] == "shutting_down"
    assert frames[2]["details"] == {"reason": "store_unavailable"}
    assert pong == {"type": "pong"}


class BrokenEventsStore(MemoryStore):
    """A memory store whose event reads fail, once ``broken``, with an error no layer
    translates (not a StoreError): what only the transport can still catch."""

    def __init__(self) -> None:
        super().__init__()
        self.broken = False

    async def read_events(
        self, after: int, limit: int, *, job_id: str | None = None, tool: str | None = None
    ) -> list[JobEvent]:
        if self.broken:
            raise RuntimeError("the event log is in a state nobody foresaw")
        return await super().read_events(after, limit, job_id=job_id, tool=tool)


def _stream_failures(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry.get("event") == "event stream failed"]


async def test_an_unexpected_store_failure_ends_a_websocket_with_an_error_frame_and_1011() -> None:
    """A replay failing with an error that is not a RequestError is one logged traceback, an
    ``internal`` error frame and a 1011 close, never a 500 written into the upgraded socket."""
    store = BrokenEventsStore()
    async with serve(store=store) as server:
        job = await server.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        store.broken = True
        async with server.http.ws_connect(
            server.ws_url(f"/v1/jobs/{job['id']}/events"), headers=auth("alice")
        ) as ws:
            frame = await receive_json(ws)
            closing = await ws.receive(timeout=10)
        failures = _stream_failures(server.logs)
    assert set(frame) == ENVELOPE_FIELDS
    assert (frame["type"], frame["job_id"]) == ("internal", job["id"])
    assert "Traceback" not in frame["message"]
    assert (closing.type, closing.data) == (WSMsgType.CLOSE, WSCloseCode.INTERNAL_ERROR)
    assert len(failures) == 1
    assert "RuntimeError: the event log is in a state nobody foresaw" in failures[0]["exception"]


async def test_an_unexpected_store_failure_ends_an_sse_stream_with_a_stream_error() -> None:
    """The same failure on SSE is one logged traceback and a ``jobwarden.stream.error`` event
    holding an ``internal`` envelope, then the end of the stream."""
    store = BrokenEventsStore()
    async with serve(store=store) as server:
        job = await server.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        store.broken = True
        async with server.http.get(
            server.url(f"/v1/jobs/{job['id']}/events"),
            headers=auth("alice") | {"Accept": "text/event-stream"},
        ) as resp:
            seen = [await next_sse(resp) for _ in range(2)]
        failures = _stream_failures(server.logs)
    assert seen[0] is not None
    assert seen[0].event == "jobwarden.stream.error"
    assert check_envelope(seen[0].data, "internal")["job_id"] == job["id"]
    assert seen[1] is None
    assert len(failures) == 1


async def test_a_since_beyond_the_largest_offset_is_an_error_frame_on_sqlite(
    tmp_path: Path,
) -> None:
    """A subscribe frame whose since is past 10**18 (past SQLite's 64-bit integers too) gets an
    invalid_request frame and the socket stays usable; 10**18 itself is accepted."""
    async with serve(store=SqliteStore(tmp_path / "jobs.db")) as server:
        job = await server.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        async with server.http.ws_connect(server.ws_url("/v1/events"), headers=auth("alice")) as ws:
            errors = []
            for since in (2**63, 10**18 + 1):
                await ws.send_str(f'{{"op": "subscribe", "since": {since}}}')
                errors.append(await ws.receive_json(timeout=10))
            await ws.send_json({"op": "subscribe", "since": 10**18})
            clamped = await ws.receive_json(timeout=10)
            await ws.send_json({"op": "ping"})
            pong = await ws.receive_json(timeout=10)
            await ws.send_json({"op": "subscribe", "since": 0})
            start = await ws.receive_json(timeout=10)
            replayed = [await ws.receive_json(timeout=10) for _ in range(3)]
    for error in errors:
        assert set(error) == ENVELOPE_FIELDS
        assert error["type"] == "invalid_request"
        assert "<= 1000000000000000000" in error["message"]
    assert clamped == {"type": "subscribed", "since": 3}  # from now on: the newest event
    assert pong == {"type": "pong"}
    assert start == {"type": "subscribed", "since": 0}
    assert [frame["subject"] for frame in replayed] == [job["id"]] * 3


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/jobs?wait=30", {"tool": "builtin.echo", "input": {"text": "left"}}),
        (
            "/v1/analyze-execution",
            {"plugin": "imaging", "image": "aGVsbG8=", "mime_type": "image/png"},
        ),
    ],
    ids=["wait", "seed-sync"],
)
async def test_a_wait_the_supervisor_stops_under_is_a_202_with_the_job(
    path: str, body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submit waiting for its job when the supervisor stops first (its store failed: the job
    is left for the next start, and ``wait`` says so with JobNotFinished) answers 202 with the
    job as accepted, never 409 job_not_finished, which that route does not answer."""
    async with serve() as server:

        async def stopped_first(job_id: str, **_: object) -> JobRecord:
            raise JobNotFinished(f"job {job_id} is left queued for the next start", job_id=job_id)

        monkeypatch.setattr(server.sup, "wait", stopped_first)
        async with server.http.post(server.url(path), json=body, headers=auth("alice")) as resp:
            status, answer = resp.status, await resp.json()
    assert status == 202, answer
    job = answer.get("job", answer)
    assert job.get("state", job.get("status")) == "queued"
