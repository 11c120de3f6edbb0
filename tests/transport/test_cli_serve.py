"""The real CLI: ``python -m jobwarden serve`` as a subprocess, over real sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from anyio.abc import Process

from tests.transport.conftest import KEYS, KEYS_TOML, auth

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
ATTEMPTS = 400  # connection attempts while the process starts (at most ~20 s)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any JOBWARDEN_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWARDEN_")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@asynccontextmanager
async def running_server(
    tmp_path: Path, *args: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[Process, str, Path]]:
    """``python -m jobwarden serve --port <free> *args``; yields (process, base URL, log file).

    Waits until /v1/health answers; kills the process if the test leaves it running.
    """
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = await anyio.open_process(
            [sys.executable, "-m", "jobwarden", "serve", "--port", str(port), *args],
            cwd=tmp_path,
            env=dict(env or clean_env()),
            stdout=out,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_healthy(process, base, log)
        yield process, base, log
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
        await process.aclose()


def _output(log: Path) -> str:
    """What the server process wrote so far."""
    return log.read_text(errors="replace")


async def _wait_healthy(process: Process, base: str, log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(ATTEMPTS):
            if process.returncode is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{_output(log)}")
            try:
                async with http.get(base + "/v1/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            # Waiting for another process to bind its port: nothing in this process to wait on.
            await anyio.sleep(0.05)
    pytest.fail(f"/v1/health never answered:\n{_output(log)}")


async def _stop(process: Process) -> int:
    process.send_signal(signal.SIGTERM)
    with anyio.fail_after(20):
        return await process.wait()


async def test_serve_runs_jobs_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    """`jobwarden serve` (open, loopback) runs a job with ?wait= and exits 0 on SIGTERM."""
    async with running_server(tmp_path) as (process, base, log):
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/v1/health") as resp:
                health: dict[str, Any] = await resp.json()
            async with http.post(
                base + "/v1/jobs?wait=5",
                json={"tool": "builtin.echo", "input": {"text": "from the CLI"}},
            ) as resp:
                assert resp.status == 200
                job = (await resp.json())["job"]
        code = await _stop(process)
    output = _output(log)
    assert health["status"] == "ok"
    assert job["state"] == "succeeded"
    assert job["result"] == {"text": "from the CLI"}
    assert code == 0, output
    assert "NO API KEYS CONFIGURED" in output
    assert "Traceback" not in output


async def test_serve_with_a_keys_file_requires_a_key(tmp_path: Path) -> None:
    """With JOBWARDEN_KEYS_FILE the CLI server refuses requests without a key and serves alice."""
    keys = tmp_path / "keys.toml"
    await anyio.Path(keys).write_text(KEYS_TOML)
    env = clean_env(JOBWARDEN_KEYS_FILE=str(keys))
    async with running_server(tmp_path, "--host", "127.0.0.1", env=env) as (process, base, log):
        async with aiohttp.ClientSession() as http:
            body = {"tool": "builtin.echo", "input": {"text": "keyed"}}
            async with http.post(base + "/v1/jobs?wait=5", json=body) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["type"] == "unauthorized"
            async with http.post(base + "/v1/jobs?wait=5", json=body, headers=auth("alice")) as r:
                assert r.status == 200
                job = (await r.json())["job"]
            async with http.get(base + "/v1/jobs", headers={"X-API-Key": KEYS["bob"]}) as resp:
                assert (await resp.json())["jobs"] == []
        code = await _stop(process)
    assert job["owner"] == "alice"
    assert code == 0, _output(log)
    assert "NO API KEYS CONFIGURED" not in _output(log)


async def test_serve_refuses_to_bind_openly_beyond_loopback() -> None:
    """`serve --host 0.0.0.0` without keys exits 2 with a message saying why."""
    done = await anyio.run_process(
        [sys.executable, "-m", "jobwarden", "serve", "--host", "0.0.0.0", "--port", "0"],
        cwd=ROOT,
        env=clean_env(),
        check=False,
    )
    stderr = done.stderr.decode()
    assert done.returncode == 2, (done.stdout, stderr)
    assert "no API keys configured" in stderr
    assert "0.0.0.0" in stderr
    assert "Traceback" not in stderr


def test_an_unknown_log_level_from_the_environment_is_refused() -> None:
    """JOBWARDEN_LOG_LEVEL=loud stops serve with exit code 2 and says why."""
    env = {**os.environ, "JOBWARDEN_LOG_LEVEL": "loud"}
    done = subprocess.run(
        [sys.executable, "-m", "jobwarden", "serve", "--port", "9"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "unknown log level" in done.stderr
