"""The runnable programs under examples/ run to completion and print what they promise.

(``examples/hello-plugin`` is a package, installed and run by tests/plugins/test_example_plugin.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> str:
    """Run ``examples/<name>`` as its own process; return its stdout once it exited 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWARDEN_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_every_example_script_is_tested() -> None:
    """Each Python file directly under examples/ has a test in this module."""
    tested = {"embed_asyncio.py", "embed_trio.py", "embed_aiohttp.py", "ws_client.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_embed_asyncio() -> None:
    """The asyncio example follows progress, runs, fails, refuses bad input and cancels."""
    out = run_example("embed_asyncio.py")
    assert "event 6 jobwarden.job.progress progress=1.0" in out
    assert "waited: succeeded {'title': 'quarterly', 'pages': 4}" in out
    assert "run: {'title': 'annual', 'pages': 3}" in out
    assert "failed: plugin_error {'exception': 'builtins.ValueError'}" in out
    assert "invalid_input: Expected `str`, got `int` - at `$.title`" in out
    assert "tool_not_found: no tool named 'report.missing'" in out
    assert "cancelled: cancelled while running" in out
    assert "metrics: 3 calls, 1 error" in out


def test_embed_trio() -> None:
    """The trio example runs a job, cancels one at its first progress report, and sees a failure."""
    pytest.importorskip("trio")
    out = run_example("embed_trio.py")
    assert "echo: {'text': 'from trio'}" in out
    assert "jobwarden.job.cancelled" in out
    assert "failed: plugin_error" in out


def test_embed_aiohttp() -> None:
    """Mounted under /jobs-api, the API serves jobs, websockets, OpenAPI and its body limit."""
    out = run_example("embed_aiohttp.py")
    assert "host route: {'app': 'host'}" in out
    assert "submit: 200 succeeded {'text': 'mounted'}" in out
    assert "event: jobwarden.job.succeeded" in out
    assert "openapi servers: [{'url': '/jobs-api'}]" in out
    assert "too large: 413 payload_too_large" in out


def test_ws_client() -> None:
    """The websocket client resumes after a disconnect and sees every event exactly once."""
    out = run_example("ws_client.py")
    assert "first connection: ['1', '2', '3', '4', '5', '6', '7']" in out
    assert "every event once, in order: 15 events" in out
