"""An input accepted at submit is the input a durable store gives back after a restart."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from jobwarden import JobState, Plugin, Supervisor, ToolContext, errors
from jobwarden.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


class Keyed(msgspec.Struct):
    """An input with a dict keyed by ints and a float."""

    ints: dict[int, str] = {}
    ratio: float = 0.0


def keyed_plugin(gate: anyio.Event) -> Plugin:
    """A plugin whose tool (one call at a time) waits for ``gate``, then echoes its input."""
    plugin = Plugin("keyed", version="1.0.0")

    @plugin.tool(max_concurrency=1)
    async def echo(inp: Keyed, ctx: ToolContext) -> Keyed:
        """Wait for the gate, then return the input."""
        await gate.wait()
        return inp

    return plugin


def opened_gate() -> anyio.Event:
    gate = anyio.Event()
    gate.set()
    return gate


async def test_an_int_keyed_input_runs_after_a_restart(tmp_path: Path) -> None:
    """A job with int keys, stored as JSON's string keys and found queued after a restart,
    runs then rather than being cancelled as an input its tool no longer accepts."""
    path = tmp_path / "jobs.db"
    async with Supervisor(
        plugins=[keyed_plugin(anyio.Event())], store=SqliteStore(path), shutdown_grace_s=0
    ) as sup:
        blocker = await sup.submit("keyed.echo", {})
        async with sup.subscribe(job_id=blocker.id, state=JobState.RUNNING) as events:
            async for _ in events:
                break
        job_id = (await sup.submit("keyed.echo", {"ints": {1: "a"}})).id
    async with Supervisor(plugins=[keyed_plugin(opened_gate())], store=SqliteStore(path)) as sup:
        done = await sup.wait(job_id, timeout=5)
    assert (done.state, done.result) == (JobState.SUCCEEDED, {"ints": {"1": "a"}, "ratio": 0.0})


@pytest.mark.parametrize("ratio", [math.nan, math.inf])
async def test_nan_or_infinity_is_refused_at_submit(tmp_path: Path, ratio: Any) -> None:
    """A float JSON cannot hold is InvalidInput at submit, with no job stored to be dropped
    after a restart."""
    plugin = keyed_plugin(opened_gate())
    async with Supervisor(plugins=[plugin], store=SqliteStore(tmp_path / "j.db")) as sup:
        with pytest.raises(errors.InvalidInput, match=r"NaN or infinity at `\$\.ratio`"):
            await sup.submit("keyed.echo", {"ratio": ratio})
        assert (await sup.list_jobs()).jobs == []
