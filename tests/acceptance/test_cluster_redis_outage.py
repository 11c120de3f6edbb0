"""Redis goes away under a running cluster (restarted, or holding every write) and comes back:
submits meanwhile answer 503, the job that was running finishes, and a websocket subscriber gets
every event once, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.acceptance.cluster import (
    Node,
    cluster,
    nap,
    store_url,
    submit,
    until,
)
from tests.acceptance.event_recorder import kind, recording
from tests.redis_server import RestartableRedis, new_prefix, restartable_redis

pytestmark = pytest.mark.anyio

ECHO = {"tool": "builtin.echo", "input": {"text": "while Redis is away"}}


async def post(http: aiohttp.ClientSession, node: Node, body: dict[str, Any]) -> tuple[int, Any]:
    """POST /v1/jobs on ``node``: the status and the body."""
    async with http.post(node.base + "/v1/jobs", json=body) as resp:
        return resp.status, await resp.json()


OUTAGES = {
    # Shut down (its append-only file complete) and started again on the same port.
    "restart": (RestartableRedis.stop, RestartableRedis.start, {}),
    # CLIENT PAUSE WRITE: connections stay up and writes hang, so only a short socket timeout
    # turns them into errors.
    "paused writes": (
        RestartableRedis.pause_writes,
        RestartableRedis.unpause,
        {"socket_timeout": 0.2},
    ),
}


@pytest.mark.parametrize("outage", list(OUTAGES))
async def test_a_redis_outage_loses_no_job_and_no_event(tmp_path: Path, outage: str) -> None:
    """With Redis away submits are 503 store_unavailable; once back, the running job finishes and
    the subscriber on B has every event exactly once, in offset order."""
    begin, end, options = OUTAGES[outage]
    with restartable_redis(tmp_path / "redis") as redis:
        store = store_url(new_prefix(), redis.url, **options)
        async with cluster(tmp_path, store, 2) as nodes:
            a, b = nodes.nodes
            async with aiohttp.ClientSession() as http, recording(b.base) as seen:
                running = await submit(http, a, nap(1))
                with anyio.fail_after(10):
                    await seen.wait_for(lambda: "running" in seen.kinds(running["id"]))
                await anyio.to_thread.run_sync(begin, redis)
                with anyio.fail_after(15):
                    refused = [await post(http, node, ECHO) for node in (a, b)]
                await anyio.to_thread.run_sync(end, redis)
                answers: list[tuple[int, Any]] = []

                async def accepted() -> bool:
                    answers.append(await post(http, b, ECHO))
                    return answers[-1][0] != 503

                await until(accepted, seconds=15, what="B accepts jobs once Redis is back")
                assert answers[-1][0] == 202, answers[-1]
                after: dict[str, Any] = answers[-1][1]["job"]
                with anyio.move_on_after(15):
                    await seen.wait_for(lambda: seen.finished([running["id"], after["id"]]))
                assert seen.finished([running["id"], after["id"]]), (
                    "seen on B within 15 s",
                    seen.kinds(running["id"]),
                    seen.kinds(after["id"]),
                )
            last = seen.offsets()[-1]
            async with recording(a.base) as replay:
                with anyio.fail_after(10):
                    await replay.wait_for(
                        lambda: bool(replay.events) and replay.offsets()[-1] >= last
                    )

    for status, body in refused:
        assert status == 503, body
        assert (body["error"]["type"], body["error"]["details"]) == (
            "shutting_down",
            {"reason": "store_unavailable"},
        )
    assert seen.kinds(running["id"]) == ["queued", "running", "succeeded"]
    assert seen.kinds(after["id"]) == ["queued", "running", "succeeded"]
    offsets = seen.offsets()
    assert offsets == sorted(set(offsets)), "in offset order, each once"
    assert [o for o in replay.offsets() if o <= last] == offsets, "no event missed"
    assert all(kind(e) != "failed" for e in seen.events)
