"""Tools for the multi-node acceptance tests, named by ``tests.cluster_plugin:cluster``: a nap
that is safe to repeat after a crash, one that runs one at a time across the cluster, and one
that kills the node running it."""

from __future__ import annotations

import os
from typing import Annotated

import anyio
import msgspec

from jobwarden import Plugin, ToolContext

cluster = Plugin("cluster", version="1.0.0")

# The exit code of a node killed by ``cluster.crash``: tells its death from any other.
CRASH_EXIT_CODE = 86


class Nap(msgspec.Struct, forbid_unknown_fields=True):
    """How long to sleep."""

    seconds: Annotated[float, msgspec.Meta(ge=0, le=600)]


class Slept(msgspec.Struct):
    """How long was slept."""

    slept_s: float


class Nothing(msgspec.Struct):
    """No input, and never an output: ``crash`` does not return."""


@cluster.tool(retry_on_interrupt=True)
async def nap(inp: Nap, ctx: ToolContext) -> Slept:
    """Sleep; run again on another node if the node running it dies."""
    await anyio.sleep(inp.seconds)
    return Slept(slept_s=inp.seconds)


@cluster.tool(max_concurrency=1)
async def exclusive(inp: Nap, ctx: ToolContext) -> Slept:
    """Sleep, one call at a time in the whole cluster."""
    await anyio.sleep(inp.seconds)
    return Slept(slept_s=inp.seconds)


@cluster.tool(retry_on_interrupt=True)
async def crash(inp: Nothing, ctx: ToolContext) -> Nothing:
    """Kill the node running it at once, as a segfault would; delivered again, it kills again."""
    os._exit(CRASH_EXIT_CODE)
