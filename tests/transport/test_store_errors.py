"""A store that refuses writes, over HTTP: 503 envelopes with Retry-After, other jobs unharmed."""

from __future__ import annotations

import pytest

from jobwarden import JobState
from tests.fakes import FullStore
from tests.transport.conftest import auth, serve

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
