"""A store that refuses writes or cannot read a row, over HTTP: 503 envelopes (with Retry-After),
stream errors, other jobs unharmed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jobwarden import JobState
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import FullStore
from tests.transport.conftest import auth, check_envelope, expect_error, next_sse, serve

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
            frames = [await ws.receive_json(timeout=10) for _ in range(3)]
            await ws.send_json({"op": "ping"})
            pong = await ws.receive_json(timeout=10)
    assert [frame.get("type") for frame in frames[:2]] == [
        "jobwarden.job.queued",
        "jobwarden.job.running",
    ]
    assert frames[2]["type"] == "shutting_down"
    assert frames[2]["details"] == {"reason": "store_unavailable"}
    assert pong == {"type": "pong"}
