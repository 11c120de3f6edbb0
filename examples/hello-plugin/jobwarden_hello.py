"""An example jobwarden plugin, packaged on its own: ``hello.greet``."""

from __future__ import annotations

import msgspec

from jobwarden import Plugin, ToolContext

hello = Plugin("hello", version="0.1.0", description="Greets whoever it is given.")


class GreetIn(msgspec.Struct):
    name: str
    excited: bool = False


class GreetOut(msgspec.Struct):
    greeting: str


@hello.tool(timeout=5.0)
async def greet(inp: GreetIn, ctx: ToolContext) -> GreetOut:
    """Say hello to ``name``."""
    await ctx.progress(1.0, "greeted")
    return GreetOut(greeting=f"Hello, {inp.name}{'!' if inp.excited else '.'}")
