"""The client commands' harness: a real server process, and the real CLI run as subprocesses.

The server runs ``tests.cli.plugin:clitest`` only; every command is ``python -m jobwarden ...``
with JOBWARDEN_URL pointing at it. Background commands are read line by line, so a test waits
on what a command printed, never on a clock.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.server_process import ROOT, clean_env, running_server

SERVER_ARGS = (
    "--store",
    "memory://",
    "--no-builtin",
    "--no-entry-points",
    "--plugin",
    "tests.cli.plugin:clitest",
)
# What rich needs to draw its live views into a pipe as it would on a terminal.
FORCED_TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1", "COLUMNS": "160"}
COMMAND_TIMEOUT_S = 60


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp is asyncio-only: these tests run on asyncio alone."""
    return "asyncio"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    """A real ``jobwarden serve`` with the clitest plugin and a memory store; yields its URL."""
    async with running_server(tmp_path, *SERVER_ARGS, env=server_env()) as (_, base, _log):
        yield base


def server_env(**extra: str) -> dict[str, str]:
    """The server's environment: no JOBWARDEN_* setting, the tests importable."""
    return clean_env(PYTHONPATH=str(ROOT), **extra)


def cli_env(url: str, **extra: str) -> dict[str, str]:
    """A client command's environment: JOBWARDEN_URL set, nothing else of jobwarden's."""
    return clean_env(JOBWARDEN_URL=url, **extra)


@dataclass(frozen=True)
class Done:
    """A finished command: exit code, stdout and stderr."""

    code: int
    out: str
    err: str


async def jobwarden(
    url: str, *args: str, stdin: bytes | None = None, env: Mapping[str, str] | None = None
) -> Done:
    """Run ``python -m jobwarden *args`` against ``url`` to its end."""
    with anyio.fail_after(COMMAND_TIMEOUT_S):
        done = await anyio.run_process(
            [sys.executable, "-m", "jobwarden", *args],
            input=stdin,
            env=cli_env(url, **(env or {})),
            cwd=ROOT,
            check=False,
        )
    return Done(done.returncode, done.stdout.decode(), done.stderr.decode())


@asynccontextmanager
async def background(
    url: str, *args: str, env: Mapping[str, str] | None = None
) -> AsyncIterator[Process]:
    """``python -m jobwarden *args`` against ``url`` in the background; killed if left running."""
    process = await anyio.open_process(
        [sys.executable, "-m", "jobwarden", *args], env=cli_env(url, **(env or {})), cwd=ROOT
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
        await process.aclose()


async def finish(process: Process) -> int:
    """Wait for a background command to exit; its exit code."""
    with anyio.fail_after(COMMAND_TIMEOUT_S):
        return await process.wait()


class Lines:
    """A background command's output, one line at a time, remembered."""

    def __init__(self, stream: ByteReceiveStream | None) -> None:
        assert stream is not None
        self._stream = BufferedByteReceiveStream(stream)
        self.seen: list[str] = []

    async def next(self) -> str:
        """The next line, without its newline."""
        with anyio.fail_after(COMMAND_TIMEOUT_S):
            raw = await self._stream.receive_until(b"\n", 1 << 20)
        line = raw.decode()
        self.seen.append(line)
        return line

    async def until(self, wanted: Callable[[str], bool]) -> str:
        """Read lines up to and including the first that ``wanted`` accepts; return it."""
        while not wanted(line := await self.next()):
            pass
        return line
