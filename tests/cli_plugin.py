"""Plugins for the command-line tests, named by ``tests.cli_plugin:demo`` and ``:timed``."""

from __future__ import annotations

import msgspec

from jobwarden import Plugin, RetryPolicy, ToolContext

demo = Plugin("demo", version="0.2.0")


class Ping(msgspec.Struct):
    """Nothing to say."""


class Pong(msgspec.Struct):
    """The answer."""

    answer: str


@demo.tool(circuit_failures=3)
async def ping(inp: Ping, ctx: ToolContext) -> Pong:
    """Answer pong."""
    return Pong(answer="pong")


@demo.on_startup
async def start() -> None:
    """Nothing to set up."""


@demo.on_shutdown
async def stop() -> None:
    """Nothing to tear down."""


timed = Plugin("timed", version="1.0.0")


@timed.tool(
    timeout=5,
    total_timeout=2.5,
    queue_timeout=1234567,
    retry=RetryPolicy(backoff_s=1, max_backoff_s=30.0),
    circuit_failures=2,
    circuit_window_s=90,
)
async def slow(inp: Ping, ctx: ToolContext) -> Pong:
    """Answer late."""
    return Pong(answer="late")


@timed.tool(timeout=1234567.5)
async def slower(inp: Ping, ctx: ToolContext) -> Pong:
    """Answer later."""
    return Pong(answer="later")
