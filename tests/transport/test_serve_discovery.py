"""`jobwarden serve` with plugins that fail to load: the server runs and lists them as failed."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.server_process import clean_env, running_server
from tests.server_process import output as server_output

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def test_serve_keeps_running_with_broken_plugins(tmp_path: Path) -> None:
    """A bad --plugin and a bad config entry are failed in /v1/plugins; the good ones serve."""
    config = tmp_path / "jobwarden.toml"
    config.write_text('plugins = ["tests.cli_plugin:demo", "json:dumps"]\n')
    env = clean_env(JOBWARDEN_CONFIG=str(config), PYTHONPATH=str(ROOT))
    args = ("--store", "memory://", "--plugin", "jw_missing_module:plugin", "--no-entry-points")
    async with running_server(tmp_path, *args, env=env) as (process, base, log):
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/v1/plugins") as resp:
                listed: dict[str, Any] = await resp.json()
            async with http.post(
                base + "/v1/jobs?wait=5", json={"tool": "demo.ping", "input": {}}
            ) as resp:
                job = (await resp.json())["job"]
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            code = await process.wait()
    output = server_output(log)
    states = {p["name"]: (p["state"], p["reason"]) for p in listed["plugins"]}
    assert states["builtin"] == ("running", None)
    assert states["imaging"] == ("running", None)
    assert states["demo"] == ("running", None)
    assert states["jw_missing_module:plugin"][0] == "failed"
    assert "ModuleNotFoundError" in states["jw_missing_module:plugin"][1]
    assert states["json:dumps"] == (
        "failed",
        "'json:dumps' is a function, not a jobwarden Plugin",
    )
    assert job["result"] == {"answer": "pong"}
    assert code == 0, output
    assert "plugin failed to load" in output
