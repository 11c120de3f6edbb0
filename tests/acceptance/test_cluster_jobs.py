"""Several ``jobwarden serve`` nodes on one Redis prefix behave as one service: a job submitted on
one node is seen whole on another, a burst spread over the nodes runs each job exactly once,
idempotency keys and a tool's ``max_concurrency`` hold across nodes."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.acceptance.cluster import (
    Node,
    cluster,
    get_json,
    store_url,
    submit,
)
from tests.acceptance.event_recorder import TERMINAL, kind, recording

pytestmark = pytest.mark.anyio


async def sse_events(
    http: aiohttp.ClientSession, node: Node, path: str, **headers: str
) -> list[str]:
    """The ids of an SSE stream's events, read to its end (a job's stream ends after its terminal
    event); the block opening the stream, an id without data, is no event."""
    headers = {"Accept": "text/event-stream", **headers}
    async with http.get(node.base + path, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        text = (await resp.read()).decode()
    blocks = [block.splitlines() for block in text.split("\n\n")]
    return [
        lines[0].removeprefix("id: ")
        for lines in blocks
        if lines and lines[0].startswith("id: ") and any(line.startswith("data:") for line in lines)
    ]


async def test_a_job_submitted_on_one_node_is_seen_whole_on_another(
    tmp_path: Path, redis_prefix: str
) -> None:
    """A job submitted on A is followed, read, listed and replayed on B as if B had taken it."""
    async with cluster(tmp_path, store_url(redis_prefix), 2) as nodes:
        a, b = nodes.nodes
        async with aiohttp.ClientSession() as http, recording(b.base) as everything:
            job = await submit(http, a, {"tool": "builtin.sleep", "input": {"seconds": 0.2}})
            async with recording(b.base, f"/v1/jobs/{job['id']}/events") as watched:
                with anyio.fail_after(10):
                    await watched.wait_for(lambda: watched.closed)
            fetched = (await get_json(http, b, f"/v1/jobs/{job['id']}"))["job"]
            result = await get_json(http, b, f"/v1/jobs/{job['id']}/result")
            listed = [j["id"] for j in (await get_json(http, b, "/v1/jobs"))["jobs"]]
            waited = [
                await submit(http, b, {"tool": "builtin.echo", "input": {"text": f"{i}"}}, wait=5)
                for i in range(6)
            ]
            first, *rest = watched.events
            resumed = await sse_events(
                http, b, f"/v1/jobs/{job['id']}/events", **{"Last-Event-ID": first["id"]}
            )
            with anyio.fail_after(10):
                await everything.wait_for(lambda: everything.finished([j["id"] for j in waited]))

    assert {a.node_id, b.node_id} == {f"{socket.gethostname()}-{n.process.pid}" for n in (a, b)}, (
        "GET /v1/health answers each node's <hostname>-<pid>"
    )
    assert [kind(e) for e in watched.events] == ["queued", "running", "succeeded"]
    assert first["source"] == a.source  # A wrote the queued event: the submit was A's
    assert watched.events[1]["source"] in {a.source, b.source}
    assert (fetched["state"], result["state"]) == ("succeeded", "succeeded")
    assert result["result"] == {"slept_s": 0.2}
    assert job["id"] in listed
    assert [(j["state"], j["result"]) for j in waited] == [
        ("succeeded", {"text": f"{i}"}) for i in range(6)
    ]
    assert resumed == [e["id"] for e in rest]
    assert everything.of(job["id"]) == watched.events
    offsets = everything.offsets()
    assert offsets == sorted(set(offsets)), "B's stream of every event is in offset order, once"


async def test_a_burst_over_three_nodes_runs_every_job_exactly_once(
    tmp_path: Path, redis_prefix: str
) -> None:
    """300 jobs submitted round-robin on three nodes all succeed, each with one running event."""
    count = 300
    async with (
        cluster(tmp_path, store_url(redis_prefix), 3, "--concurrency", "4") as nodes,
        recording(nodes.nodes[0].base) as seen,
    ):
        ids: list[str] = []
        limit = anyio.Semaphore(32)

        async def one(http: aiohttp.ClientSession, index: int) -> None:
            body = {"tool": "builtin.sleep", "input": {"seconds": 0.01}}
            async with limit:
                job = await submit(http, nodes.nodes[index % 3], body)
            ids.append(job["id"])

        with anyio.fail_after(15):
            async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
                for index in range(count):
                    tg.start_soon(one, http, index)
            await seen.wait_for(lambda: seen.finished(ids))
        last = seen.offsets()[-1]
        async with recording(nodes.nodes[2].base) as replay:
            with anyio.fail_after(10):
                await replay.wait_for(lambda: bool(replay.events) and replay.offsets()[-1] >= last)

    assert len(set(ids)) == count
    wrong = {i: seen.kinds(i) for i in ids if seen.kinds(i) != ["queued", "running", "succeeded"]}
    assert not wrong, f"jobs lost, run twice or failed: {wrong}"
    offsets = seen.offsets()
    assert offsets == sorted(set(offsets)), "events arrive in offset order, each once"
    assert [o for o in replay.offsets() if o <= last] == offsets, "another node saw the same log"
    runners = {e["source"] for e in seen.events if kind(e) == "running"}
    assert len(runners) >= 2, f"one node ran everything while the others idled: {runners}"


async def test_an_idempotency_key_names_one_job_on_every_node(
    tmp_path: Path, redis_prefix: str
) -> None:
    """The same key submitted on A and on B, one after the other or at once, gives one job id."""
    async with cluster(tmp_path, store_url(redis_prefix), 2) as nodes:
        a, b = nodes.nodes

        def body(key: str) -> dict[str, Any]:
            return {"tool": "builtin.echo", "input": {"text": key}, "idempotency_key": key}

        async with aiohttp.ClientSession() as http:
            first = await submit(http, a, body("one after the other"))
            again = await submit(http, b, body("one after the other"))
            racing: list[dict[str, Any]] = []

            async def race(node: Node) -> None:
                racing.append(await submit(http, node, body("at once")))

            async with anyio.create_task_group() as tg:
                tg.start_soon(race, a)
                tg.start_soon(race, b)
            listed = (await get_json(http, b, "/v1/jobs"))["jobs"]

    assert first["id"] == again["id"]
    assert racing[0]["id"] == racing[1]["id"]
    assert sorted(j["id"] for j in listed) == sorted({first["id"], racing[0]["id"]})


async def test_a_tools_max_concurrency_holds_across_nodes(
    tmp_path: Path, redis_prefix: str
) -> None:
    """Eight calls of a max_concurrency=1 tool submitted on two nodes never overlap."""
    async with (
        cluster(tmp_path, store_url(redis_prefix), 2) as nodes,
        aiohttp.ClientSession() as http,
        recording(nodes.nodes[0].base) as seen,
    ):
        body = {"tool": "cluster.exclusive", "input": {"seconds": 0.1}}
        jobs = [await submit(http, nodes.nodes[i % 2], body) for i in range(8)]
        with anyio.fail_after(15):
            await seen.wait_for(lambda: seen.finished(j["id"] for j in jobs))

    running, most = 0, 0
    for event in seen.events:
        if kind(event) == "running":
            running += 1
        elif kind(event) in TERMINAL:
            running -= 1
        most = max(most, running)
    assert most == 1, [(kind(e), e["subject"], e["source"]) for e in seen.events]
    assert all(seen.kinds(j["id"])[-1] == "succeeded" for j in jobs)
