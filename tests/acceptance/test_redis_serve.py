"""``jobwarden serve --store redis://...`` as a real process: a job round trip, and a clear exit
when Redis is not there."""

from __future__ import annotations

import signal
import socket
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.redis_server import URL
from tests.server_process import output, running_server, serve_until_exit


@pytest.mark.anyio
async def test_a_job_round_trip_on_the_redis_store(tmp_path: Path, redis_prefix: str) -> None:
    """The server on Redis accepts a job, runs it, lists it and replays its events over SSE; its
    health names the node (host and process)."""
    store = f"{URL}?prefix={redis_prefix}"
    async with running_server(tmp_path, "--store", store) as (process, base, log):
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/v1/health") as resp:
                health = await resp.json()
            body = {"tool": "builtin.echo", "input": {"text": "via redis"}}
            async with http.post(base + "/v1/jobs?wait=5", json=body) as resp:
                assert resp.status == 200
                job: dict[str, Any] = (await resp.json())["job"]
            async with http.get(base + "/v1/jobs") as resp:
                listed = (await resp.json())["jobs"]
            headers = {"Accept": "text/event-stream"}
            async with http.get(base + f"/v1/jobs/{job['id']}/events", headers=headers) as resp:
                stream = (await resp.read()).decode()
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            code = await process.wait()
    assert health["node"] == f"{socket.gethostname()}-{process.pid}"
    assert job["state"] == "succeeded"
    assert job["result"] == {"text": "via redis"}
    assert [j["id"] for j in listed] == [job["id"]]
    assert [line for line in stream.splitlines() if line.startswith("event:")] == [
        "event: jobwarden.job.queued",
        "event: jobwarden.job.running",
        "event: jobwarden.job.succeeded",
    ]
    assert code == 0, output(log)
    assert "Traceback" not in output(log)
    assert not (tmp_path / "jobwarden.db").exists()


@pytest.mark.anyio
async def test_serve_exits_1_with_one_line_when_redis_is_unreachable(tmp_path: Path) -> None:
    """With nothing listening at the Redis URL, serve exits 1 naming the URL, no traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = f"redis://127.0.0.1:{port}/0?prefix=nobody"
    code, stderr = await serve_until_exit("--port", "0", "--store", store, cwd=tmp_path)
    assert code == 1, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("jobwarden serve:")]
    assert len(lines) == 1
    assert f"cannot use the Redis job store at redis://127.0.0.1:{port}/0" in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.anyio
async def test_serve_exits_2_for_a_malformed_redis_url(tmp_path: Path) -> None:
    """A redis URL with an unknown option stops serve with exit code 2 and the reason."""
    code, stderr = await serve_until_exit(
        "--port", "0", "--store", "redis://localhost/0?colour=red", cwd=tmp_path
    )
    assert code == 2, stderr
    assert "unknown redis store option(s): colour" in stderr
    assert "Traceback" not in stderr
