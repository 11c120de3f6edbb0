"""SIGKILL the real server mid-flight on its SQLite file, restart it: nothing accepted is lost.

A few hundred jobs of mixed length are submitted over HTTP while a websocket subscriber records
every event. The server is killed with SIGKILL while jobs are queued, running and finished, then
started again on the same file. Every accepted job must be there: finished ones with their
results, ones cut off while running failed as ``interrupted``, queued ones run to completion; and
the subscriber resuming from its last offset must get exactly the events it missed.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.acceptance.event_recorder import TERMINAL, recording
from tests.server_process import output, running_server

pytestmark = pytest.mark.anyio

JOBS = 300


def job_body(index: int, rng: random.Random) -> dict[str, Any]:
    """Echo jobs and sleeps from 10 ms to 3 s, so the kill finds every state."""
    if index % 3 == 0:
        return {"tool": "builtin.echo", "input": {"text": f"job {index}"}}
    return {"tool": "builtin.sleep", "input": {"seconds": rng.choice([0.01, 0.2, 1.0, 3.0])}}


async def submit_all(base: str, count: int) -> dict[str, dict[str, Any]]:
    """Submit ``count`` jobs, 16 at a time; return the accepted ones by id with their bodies."""
    rng = random.Random(4)
    bodies = [job_body(i, rng) for i in range(count)]
    accepted: dict[str, dict[str, Any]] = {}
    limit = anyio.Semaphore(16)

    async def one(http: aiohttp.ClientSession, body: dict[str, Any]) -> None:
        async with limit, http.post(base + "/v1/jobs", json=body) as resp:
            assert resp.status == 202, await resp.text()
            accepted[(await resp.json())["job"]["id"]] = body

    async with aiohttp.ClientSession() as http, anyio.create_task_group() as tg:
        for body in bodies:
            tg.start_soon(one, http, body)
    return accepted


async def fetch(http: aiohttp.ClientSession, base: str, job_id: str) -> dict[str, Any]:
    async with http.get(f"{base}/v1/jobs/{job_id}") as resp:
        assert resp.status == 200, (job_id, await resp.text())
        job: dict[str, Any] = (await resp.json())["job"]
        return job


async def test_sigkill_mid_flight_loses_nothing(tmp_path: Path) -> None:
    """After SIGKILL and restart every accepted job and event is there, resumable exactly."""
    store = ["--store", "sqlite:///jobs.db"]
    async with running_server(tmp_path, *store, log_name="first.log") as (process, base, _):
        async with recording(base, "/v1/events?since=0") as before:
            accepted = await submit_all(base, JOBS)

            def mid_flight() -> bool:
                states = list(before.states().values())
                return states.count("succeeded") >= 50 and "running" in states

            with anyio.fail_after(60):
                await before.wait_for(mid_flight)
            process.send_signal(signal.SIGKILL)
            await process.wait()
        seen_before = before.states()
        finished_before = {
            e["subject"]: e["data"] for e in before.events if e["data"]["state"] in TERMINAL
        }
    assert len(accepted) == JOBS

    last_seen = before.events[-1]["id"]
    async with running_server(tmp_path, *store, log_name="second.log") as (_, base, log):
        async with recording(base, f"/v1/events?since={int(last_seen)}") as resumed:
            with anyio.fail_after(60):
                await resumed.wait_for(
                    lambda: (
                        all(
                            state in TERMINAL
                            for state in {**seen_before, **resumed.states()}.values()
                        )
                        and set({**seen_before, **resumed.states()}) >= set(accepted)
                    )
                )
        async with recording(base, "/v1/events?since=0") as replay:
            total = int(resumed.events[-1]["id"])
            with anyio.fail_after(30):
                await replay.wait_for(
                    lambda: bool(replay.events) and int(replay.events[-1]["id"]) >= total
                )
        async with aiohttp.ClientSession() as http:
            final = {job_id: await fetch(http, base, job_id) for job_id in accepted}

    # Every accepted job is there and finished; what had finished kept its result; the rest ran
    # to success, or failed as interrupted if the kill cut them off while running.
    for job_id, data in finished_before.items():
        assert final[job_id]["state"] == data["state"]
        assert final[job_id]["result"] == data["result"]
    interrupted = [j for j in final.values() if j["state"] == "failed"]
    for job in interrupted:
        assert job["error"]["type"] == "interrupted", job
        kinds = [e["type"].rsplit(".", 1)[1] for e in replay.events if e["subject"] == job["id"]]
        assert kinds == ["queued", "running", "failed"], (job, kinds)  # it was running at the kill
    assert interrupted, "the kill found no job running"
    assert all(j["state"] in {"succeeded", "failed"} for j in final.values())
    assert any(state == "queued" for state in seen_before.values())
    # The events seen before the kill plus those replayed after it are the whole log: in order,
    # no duplicate, nothing missing.
    stitched = [int(e["id"]) for e in before.events + resumed.events]
    everything = [int(e["id"]) for e in replay.events if int(e["id"]) <= total]
    assert stitched == everything
    assert len(set(stitched)) == len(stitched)
    assert "Traceback" not in log.read_text()


def writer_of(server: int) -> int:
    """The process id of the SQLite writer process the server ``server`` started."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:  # exited meanwhile
            continue
        # The parent's pid is the second field after the command name, which ends with ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server and b"sqlite_child" in command:
            return int(entry)
    raise AssertionError(f"server {server} has no SQLite writer process")


async def test_a_killed_writer_stops_the_idle_server_with_exit_1(tmp_path: Path) -> None:
    """SIGKILL of the SQLite writer process of an idle server makes the server exit 1 at once,
    naming the signal, rather than answer 503 to every submit for ever; the next start works."""
    store = ["--store", "sqlite:///jobs.db"]
    async with running_server(tmp_path, *store, log_name="first.log") as (process, base, log):
        async with aiohttp.ClientSession() as http:
            body = {"tool": "builtin.echo", "input": {"text": "before"}}
            async with http.post(base + "/v1/jobs?wait=10", json=body) as resp:
                assert resp.status == 200, await resp.text()
                before = (await resp.json())["job"]["id"]
        os.kill(writer_of(process.pid), signal.SIGKILL)
        with anyio.fail_after(30):
            assert await process.wait() == 1
    assert (
        "jobwarden serve: the job store failed: the writer process of the job store jobs.db was"
        " killed by SIGKILL"
    ) in output(log)
    async with (
        running_server(tmp_path, *store, log_name="second.log") as (_, base, _),
        aiohttp.ClientSession() as http,
    ):
        assert (await fetch(http, base, before))["state"] == "succeeded"
