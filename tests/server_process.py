"""The real server as a subprocess: ``python -m jobwarden serve`` on a free loopback port."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import pytest
from anyio.abc import Process

ROOT = Path(__file__).resolve().parents[1]
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


async def serve_until_exit(*args: str, cwd: Path = ROOT) -> tuple[int, str]:
    """Run ``python -m jobwarden serve *args`` in ``cwd`` until it exits (it is expected to
    refuse to start); its exit code and what it wrote to stderr."""
    done = await anyio.run_process(
        [sys.executable, "-m", "jobwarden", "serve", *args], cwd=cwd, env=clean_env(), check=False
    )
    return done.returncode, done.stderr.decode()


@asynccontextmanager
async def running_server(
    folder: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    log_name: str = "server.log",
    port: int | None = None,
) -> AsyncIterator[tuple[Process, str, Path]]:
    """``python -m jobwarden serve --port <port or a free one> *args`` run in ``folder``; yields
    (process, base URL, log file).

    Waits until /v1/health answers; kills the process if the test leaves it running.
    """
    port = port or free_port()
    log = folder / log_name
    with log.open("wb") as out:
        process = await anyio.open_process(
            [sys.executable, "-m", "jobwarden", "serve", "--port", str(port), *args],
            cwd=folder,
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


def output(log: Path) -> str:
    """What the server process wrote so far."""
    return log.read_text(errors="replace")


async def _wait_healthy(process: Process, base: str, log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(ATTEMPTS):
            if process.returncode is not None:
                pytest.fail(f"the server exited with {process.returncode}:\n{output(log)}")
            try:
                async with http.get(base + "/v1/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            # Waiting for another process to bind its port: nothing in this process to wait on.
            await anyio.sleep(0.05)
    pytest.fail(f"/v1/health never answered:\n{output(log)}")
