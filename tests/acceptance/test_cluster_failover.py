"""A node of a cluster dies (SIGKILL, or a tool that kills it): after its lease runs out another
node reclaims its job, which runs again if its tool is safe to repeat and fails as interrupted
otherwise; a job that keeps killing the nodes running it is dead-lettered after max_deliveries."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.acceptance.cluster import (
    Cluster,
    Node,
    cluster,
    get_json,
    nap,
    store_url,
    submit,
)
from tests.acceptance.event_recorder import Recorder, kind, recording
from tests.cluster_plugin import CRASH_EXIT_CODE

pytestmark = pytest.mark.anyio

LEASE_S = 1
MAX_DELIVERIES = 2


async def kill_the_runner(nodes: Cluster, body: dict[str, Any]) -> tuple[Node, Recorder]:
    """Submit ``body`` on the first node, SIGKILL whichever node runs it; return the survivor
    and the job's events as it saw them, to the terminal one."""
    async with aiohttp.ClientSession() as http:
        job = await submit(http, nodes.nodes[0], body)
    path = f"/v1/jobs/{job['id']}/events"
    async with (
        recording(nodes.nodes[0].base, path) as first,
        recording(nodes.nodes[1].base, path) as second,
    ):
        with anyio.fail_after(10):
            await first.wait_for(lambda: "running" in first.kinds(job["id"]))
        runner = nodes.by_source(first.events[1]["source"])
        runner.process.send_signal(signal.SIGKILL)
        await runner.process.wait()
        [survivor] = nodes.alive()
        seen = first if survivor is nodes.nodes[0] else second
        with anyio.fail_after(LEASE_S + 10):
            await seen.wait_for(lambda: seen.closed)
    return survivor, seen


async def test_a_job_cut_off_by_a_killed_node_fails_as_interrupted(
    tmp_path: Path, redis_prefix: str
) -> None:
    """SIGKILL of the node running builtin.sleep: the other node fails the job as interrupted."""
    store = store_url(redis_prefix, lease_s=LEASE_S)
    async with cluster(tmp_path, store, 2) as nodes:
        body = {"tool": "builtin.sleep", "input": {"seconds": 30}}
        survivor, seen = await kill_the_runner(nodes, body)
        async with aiohttp.ClientSession() as http:
            job_id = seen.events[0]["subject"]
            stored = (await get_json(http, survivor, f"/v1/jobs/{job_id}"))["job"]

    assert [kind(e) for e in seen.events] == ["queued", "running", "failed"]
    assert seen.events[-1]["source"] == survivor.source
    assert (stored["state"], stored["error"]["type"]) == ("failed", "interrupted")


async def test_a_repeatable_job_of_a_killed_node_runs_again_on_another(
    tmp_path: Path, redis_prefix: str
) -> None:
    """SIGKILL of the node running a retry_on_interrupt tool: attempt 2 succeeds on the other."""
    store = store_url(redis_prefix, lease_s=LEASE_S)
    async with cluster(tmp_path, store, 2) as nodes:
        survivor, seen = await kill_the_runner(nodes, nap(2))
        async with aiohttp.ClientSession() as http:
            job_id = seen.events[0]["subject"]
            stored = (await get_json(http, survivor, f"/v1/jobs/{job_id}"))["job"]

    kinds = [kind(e) for e in seen.events]
    assert kinds == ["queued", "running", "retrying", "running", "succeeded"]
    assert [e["data"]["attempt"] for e in seen.events] == [1, 1, 2, 2, 2]
    assert seen.events[3]["source"] == survivor.source
    assert (stored["state"], stored["attempt"], stored["result"]) == (
        "succeeded",
        2,
        {"slept_s": 2},
    )


async def submit_anywhere(nodes: Cluster, body: dict[str, Any]) -> dict[str, Any]:
    """Submit ``body`` (which has an idempotency key) on the first node that answers: the node
    taking the job may die before its answer is out, and the key makes the retry safe."""
    async with aiohttp.ClientSession() as http:
        for node in nodes.nodes:
            try:
                return await submit(http, node, body)
            except aiohttp.ClientError:
                continue
    pytest.fail(f"no node accepted the job:\n{nodes.logs()}")


async def wait_exits(nodes: list[Node], count: int) -> None:
    """Return once ``count`` of ``nodes`` have exited."""
    exited = 0
    async with anyio.create_task_group() as tg:

        async def watch(node: Node) -> None:
            nonlocal exited
            await node.process.wait()
            exited += 1
            if exited == count:
                tg.cancel_scope.cancel()

        for node in nodes:
            tg.start_soon(watch, node)


async def test_a_job_that_keeps_killing_its_node_is_dead_lettered(
    tmp_path: Path, redis_prefix: str
) -> None:
    """A tool that kills its node runs max_deliveries times, each on a node it kills; the next
    delivery fails it as crashed, counting itself in details.deliveries."""
    store = store_url(redis_prefix, lease_s=LEASE_S, max_deliveries=MAX_DELIVERIES)
    async with cluster(tmp_path, store, MAX_DELIVERIES + 1) as nodes:
        body = {"tool": "cluster.crash", "input": {}, "idempotency_key": "deadly"}
        job = await submit_anywhere(nodes, body)
        with anyio.fail_after(4 * LEASE_S + 10):
            await wait_exits(nodes.nodes, 2)
        [survivor] = nodes.alive()
        async with recording(survivor.base, f"/v1/jobs/{job['id']}/events") as seen:
            with anyio.fail_after(2 * LEASE_S + 10):
                await seen.wait_for(lambda: seen.closed)
        survived = survivor.alive
        [joined] = await nodes.add(1)
        async with aiohttp.ClientSession() as http:
            stored = (await get_json(http, joined, f"/v1/jobs/{job['id']}"))["job"]
            after = await submit(
                http, joined, {"tool": "builtin.echo", "input": {"text": "on"}}, wait=5
            )

    dead = [n for n in nodes.nodes if n not in (survivor, joined)]
    assert [n.process.returncode for n in dead] == [CRASH_EXIT_CODE] * MAX_DELIVERIES
    ran_on = [e["source"] for e in seen.events if kind(e) == "running"]
    assert sorted(ran_on) == sorted(n.source for n in dead), "each delivery killed one node"
    assert kind(seen.events[-1]) == "failed"
    assert survived
    error = stored["error"]
    assert (stored["state"], error["type"], error["details"]["deliveries"]) == (
        "failed",
        "crashed",
        MAX_DELIVERIES + 1,
    )
    assert after["state"] == "succeeded"
