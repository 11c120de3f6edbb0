"""A plugin for the command-line tests, named by ``tests.cli_plugin:demo``."""

from __future__ import annotations

import msgspec

from jobwarden import Plugin, ToolContext

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
