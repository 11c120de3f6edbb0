"""`jobwarden serve` as shipped: the seed route reaches the imaging plugin with no flags."""

from __future__ import annotations

import base64
import signal
from pathlib import Path

import aiohttp
import anyio
import pytest

from tests.images import red_and_blue_png
from tests.server_process import clean_env, running_server

pytestmark = pytest.mark.anyio


async def test_default_server_runs_imaging_inspect_for_a_seed_request(tmp_path: Path) -> None:
    """A seed request naming plugin imaging, and no tool, runs imaging.inspect on a plain serve."""
    image = base64.b64encode(red_and_blue_png()).decode()
    body = {"plugin": "imaging", "image": image, "mime_type": "image/png"}
    env = clean_env()
    async with running_server(tmp_path, "--store", "memory://", env=env) as (process, base, _):
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/v1/analyze-execution", json=body) as resp:
                status, answer = resp.status, await resp.json()
            async with http.get(base + f"/v1/jobs/{answer['job_id']}") as resp:
                job = (await resp.json())["job"]
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await process.wait() == 0
    assert status == 200
    assert answer["status"] == "done"
    assert (answer["result"]["format"], answer["result"]["width"]) == ("PNG", 4)
    assert job["tool"] == "imaging.inspect"
