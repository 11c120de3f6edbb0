"""Output that cannot be written: a pipe its reader closed (`jobwarden jobs | head -1`), a full
disk. Exit 1, never a traceback.

stdout is a pipe whose read end is closed before the command starts, so its first write fails
with EPIPE whenever it comes, with no race against a reader; a full disk is /dev/full.
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
        return run_into(stdout, url, *args)


def run_into(stdout: int, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m jobwarden *args`` writing to ``stdout``; its exit code and stderr."""
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


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full to stand for a full disk")
@pytest.mark.parametrize(
    "args",
    [
        ("tools", "--no-entry-points"),
        ("tools", "--no-builtin", "--no-entry-points", "--plugin", "tests.cli_plugin:demo"),
    ],
    ids=["a large listing", "a small one, flushed at the end"],
)
def test_output_to_a_full_disk_is_one_line_and_exit_1(args: tuple[str, ...]) -> None:
    """Output to a full disk exits 1 with one line saying so, however much of it there is."""
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        done = run_into(full, "http://127.0.0.1:9", *args)
    finally:
        os.close(full)
    assert (done.returncode, done.stderr) == (
        1,
        "jobwarden: cannot write the output: No space left on device\n",
    )
