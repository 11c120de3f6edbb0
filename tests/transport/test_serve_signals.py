"""`jobwarden serve` and its signals while it starts and while it stops, as a real process."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import pytest
from anyio.abc import Process

from tests.cli.conftest import Lines
from tests.server_process import ROOT, clean_env, free_port, running_server

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp is asyncio-only: these tests run on asyncio alone."""
    return "asyncio"


@asynccontextmanager
async def _serve(folder: Path, *args: str, **env: str) -> AsyncIterator[tuple[Process, Lines]]:
    """``python -m jobwarden serve *args`` in ``folder``, its stderr read line by line."""
    process = await anyio.open_process(
        [sys.executable, "-m", "jobwarden", "serve", *args],
        cwd=folder,
        env=clean_env(PYTHONPATH=str(ROOT), **env),
    )
    async with process:
        try:
            yield process, Lines(process.stderr)
        finally:
            if process.returncode is None:
                process.kill()


async def _rest(process: Process, lines: Lines) -> tuple[int, list[str]]:
    """The exit code, and every line the process wrote to stderr."""
    with anyio.fail_after(30):
        code = await process.wait()
    while True:
        try:
            await lines.next()
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return code, lines.seen


async def test_ctrl_c_while_starting_stops_it_once_started(tmp_path: Path) -> None:
    """Ctrl-C while serve starts (here: importing a plugin) stops it cleanly as soon as it has
    started, exit 0, with the default SQLite store, whose start swallowed the interrupt."""
    gate = tmp_path / "gate"
    args = ("--port", str(free_port()), "--plugin", "tests.gated_plugin:gated")
    async with _serve(tmp_path, *args, GATED_PLUGIN_GATE=str(gate)) as (process, lines):
        await lines.until(lambda line: line == "gated plugin waiting")
        process.send_signal(signal.SIGINT)
        gate.touch()
        code, seen = await _rest(process, lines)
    assert code == 0, seen
    assert any("stopping" in line for line in seen)
    assert not any("Traceback" in line for line in seen)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
async def test_a_second_signal_while_stopping_ends_it_at_once(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """A second SIGINT or SIGTERM while serve gives running jobs their grace ends the process
    by that signal with one line, no traceback; the next start finds the job interrupted."""
    args = ("--port", str(free_port()), "--log-format", "json")
    async with _serve(tmp_path, *args) as (process, lines):
        serving = await lines.until(lambda line: '"serving"' in line)
        base = json.loads(serving)["url"]
        async with aiohttp.ClientSession() as http:
            body = {"tool": "builtin.sleep", "input": {"seconds": 60}}
            async with http.post(base + "/v1/jobs", json=body) as resp:
                job_id = (await resp.json())["job"]["id"]
            async with http.ws_connect(f"{base}/v1/jobs/{job_id}/events") as ws:
                async for message in ws:
                    frame = json.loads(message.data)
                    if frame.get("data", {}).get("state") == "running":  # not the subscribed one
                        break
        process.send_signal(signum)
        await lines.until(lambda line: '"stopping"' in line)
        process.send_signal(signum)
        code, seen = await _rest(process, lines)
    assert code == -signum, seen
    assert seen[-1].startswith(
        f"jobwarden serve: a second {signum.name} while stopping: stopped at once"
    )
    assert not any("Traceback" in line for line in seen)
    async with running_server(tmp_path) as (again, base, _log):
        async with aiohttp.ClientSession() as http, http.get(f"{base}/v1/jobs/{job_id}") as resp:
            job = (await resp.json())["job"]
        again.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await again.wait()
    assert (job["state"], job["error"]["type"]) == ("failed", "interrupted")
