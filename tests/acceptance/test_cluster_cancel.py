"""Cancel on any node of a cluster: a job running on another node is stopped there, and a queued
job is cancelled at once and never runs, whichever node holds or was about to take it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.acceptance.cluster import (
    Node,
    cluster,
    get_json,
    nap,
    store_url,
    submit,
    until,
)
from tests.acceptance.event_recorder import kind, recording

pytestmark = pytest.mark.anyio


async def cancel(
    http: aiohttp.ClientSession, node: Node, job_id: str
) -> tuple[int, dict[str, Any]]:
    """POST /v1/jobs/{id}/cancel on ``node``: the status and the body."""
    async with http.post(f"{node.base}/v1/jobs/{job_id}/cancel") as resp:
        body: dict[str, Any] = await resp.json()
        return resp.status, body


async def running_jobs(http: aiohttp.ClientSession, node: Node) -> int:
    """How many jobs ``node`` says it runs right now."""
    metrics = await get_json(http, node, "/v1/metrics")
    return int(metrics["supervisor"]["running"])


async def test_a_job_running_on_one_node_is_cancelled_from_another(
    tmp_path: Path, redis_prefix: str
) -> None:
    """Cancel on B of a job running on A answers 200 cancelled, and A stops running it."""
    async with (
        cluster(tmp_path, store_url(redis_prefix), 2) as nodes,
        aiohttp.ClientSession() as http,
    ):
        job = await submit(http, nodes.nodes[0], nap(60))
        async with recording(nodes.nodes[0].base, f"/v1/jobs/{job['id']}/events") as seen:
            with anyio.fail_after(10):
                await seen.wait_for(lambda: "running" in seen.kinds(job["id"]))
            runner = nodes.by_source(seen.events[1]["source"])
            [other] = [n for n in nodes.nodes if n is not runner]
            status, body = await cancel(http, other, job["id"])
            with anyio.fail_after(10):
                await seen.wait_for(lambda: seen.closed)

        async def stopped() -> bool:
            return await running_jobs(http, runner) == 0

        await until(stopped, seconds=10, what="the runner stops the cancelled job")
        on_runner = (await get_json(http, runner, f"/v1/jobs/{job['id']}"))["job"]

    assert status == 200, body
    assert body["job"]["state"] == "cancelled"
    assert body["job"]["error"]["type"] == "cancelled"
    assert seen.kinds(job["id"]) == ["queued", "running", "cancelled"]
    assert on_runner["state"] == "cancelled"


async def test_a_queued_job_cancelled_on_another_node_never_runs(
    tmp_path: Path, redis_prefix: str
) -> None:
    """With every runner busy, a job queued on A and cancelled on B is cancelled and never runs."""
    async with cluster(tmp_path, store_url(redis_prefix), 2, "--concurrency", "1") as nodes:
        a, b = nodes.nodes
        async with aiohttp.ClientSession() as http, recording(a.base) as seen:
            blockers = [await submit(http, node, nap(60)) for node in (a, b)]
            with anyio.fail_after(10):
                await seen.wait_for(lambda: all("running" in seen.kinds(j["id"]) for j in blockers))
            queued = await submit(http, a, {"tool": "builtin.echo", "input": {"text": "never"}})
            status, body = await cancel(http, b, queued["id"])
            freed = [await cancel(http, b, j["id"]) for j in blockers]
            after = await submit(http, a, {"tool": "builtin.echo", "input": {"text": "after"}})
            with anyio.fail_after(10):
                await seen.wait_for(
                    lambda: seen.finished([after["id"], *(j["id"] for j in blockers)])
                )
            stored = (await get_json(http, a, f"/v1/jobs/{queued['id']}"))["job"]

    runners = {
        e["source"] for e in seen.events if kind(e) == "running" and e["subject"] != after["id"]
    }
    assert runners == {a.source, b.source}, "each node ran one blocker: no runner was free"
    assert status == 200, body
    assert (body["job"]["state"], body["job"]["error"]["type"]) == ("cancelled", "cancelled")
    assert [code for code, _ in freed] == [200, 200]
    assert seen.kinds(queued["id"]) == ["queued", "cancelled"]
    assert stored["state"] == "cancelled"
    assert seen.kinds(after["id"]) == ["queued", "running", "succeeded"]


async def test_a_cancel_racing_the_start_on_another_node_is_final(
    tmp_path: Path, redis_prefix: str
) -> None:
    """Jobs submitted on A and cancelled on B at once end cancelled, or run on if the cancel
    answered 409; no job runs after its cancel."""
    async with cluster(tmp_path, store_url(redis_prefix), 2) as nodes:
        a, b = nodes.nodes
        async with aiohttp.ClientSession() as http, recording(a.base) as seen:
            answers: dict[str, int] = {}
            bodies: dict[str, Any] = {}
            for _ in range(30):
                job = await submit(http, a, nap(0.2))
                answers[job["id"]], bodies[job["id"]] = await cancel(http, b, job["id"])
            with anyio.fail_after(10):
                await seen.wait_for(lambda: seen.finished(answers))

    allowed = {
        200: (["queued", "cancelled"], ["queued", "running", "cancelled"]),
        409: (["queued", "running", "succeeded"],),
    }
    names = {a.source: "A", b.source: "B"}
    wrong = {
        job_id: (status, [(kind(e), names[e["source"]]) for e in seen.of(job_id)], bodies[job_id])
        for job_id, status in answers.items()
        if seen.kinds(job_id) not in allowed.get(status, ())
    }
    assert not wrong, wrong
    assert list(answers.values()).count(200) > 0
