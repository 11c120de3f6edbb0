"""Output into a pipe its reader closed (`jobwarden jobs | head -1`): exit 1, no traceback.

stdout is a pipe whose read end is closed before the command starts, so its first write fails
with EPIPE whenever it comes, with no race against a reader.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest
from aiohttp import web

from tests.cli.conftest import cli_env
from tests.cli.fake_server import answer, fake_server
from tests.server_process import ROOT

JOB = {
    "id": "j1",
    "tool": "t.t",
    "state": "succeeded",
    "progress": None,
    "created_at": "2026-01-01T00:00:00Z",
    "started_at": None,
    "finished_at": None,
    "result": None,
    "error": None,
}


@contextmanager
def closed_pipe() -> Iterator[int]:
    """The write end of a pipe nobody reads any more."""
    read, write = os.pipe()
    os.close(read)
    try:
        yield write
    finally:
        os.close(write)


def run_into_closed_pipe(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m jobwarden *args`` with stdout a closed pipe; its exit code and stderr."""
    with closed_pipe() as stdout:
        return subprocess.run(
            [sys.executable, "-m", "jobwarden", *args],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(url),
            cwd=ROOT,
            timeout=60,
            check=False,
        )


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("submit", "--help"),
        ("tools", "--no-entry-points"),
        ("tools", "--no-entry-points", "--json"),
        ("scan", "--json", "jobwarden"),
    ],
    ids=" ".join,
)
def test_a_local_command_into_a_closed_pipe_exits_1_quietly(args: tuple[str, ...]) -> None:
    """Help, listings and scans written into a closed pipe end with exit 1 and nothing on stderr."""
    done = run_into_closed_pipe("http://127.0.0.1:9", *args)
    assert (done.returncode, done.stderr) == (1, "")


@pytest.mark.anyio
@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
async def test_a_client_command_into_a_closed_pipe_exits_1_quietly(as_json: bool) -> None:
    """`jobs` (a JSON line or a table) written into a closed pipe ends with exit 1, quietly."""
    page = {"jobs": [JOB], "next_cursor": None}
    args = ("jobs", "--json") if as_json else ("jobs",)
    async with fake_server([web.get("/v1/jobs", answer(page))]) as url:
        done = await anyio.to_thread.run_sync(run_into_closed_pipe, url, *args)
    assert (done.returncode, done.stderr) == (1, "")
