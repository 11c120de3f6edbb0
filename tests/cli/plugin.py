"""Tools for the client-command tests on a real server: ``tests.cli.plugin:clitest``."""

from __future__ import annotations

import anyio
import msgspec

from jobwarden import Plugin, ToolContext

clitest = Plugin("clitest", version="1.0.0", description="Tools for the CLI tests.")


class Text(msgspec.Struct, forbid_unknown_fields=True):
    """Some text."""

    text: str


class Steps(msgspec.Struct, forbid_unknown_fields=True):
    """One progress message per step."""

    messages: list[str]


class Done(msgspec.Struct):
    """How many steps were reported."""

    steps: int


class Nothing(msgspec.Struct):
    """No input."""


class Pair(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
    """A count and a label, read from a JSON array: ``[count, label]``."""

    count: int
    label: str


@clitest.tool(timeout=30)
async def echo(inp: Text, ctx: ToolContext) -> Text:
    """Return the text."""
    return inp


@clitest.tool(timeout=30)
async def steps(inp: Steps, ctx: ToolContext) -> Done:
    """Report progress once per message, evenly spaced from 0 to 1."""
    for index, message in enumerate(inp.messages, start=1):
        await ctx.progress(index / len(inp.messages), message)
    return Done(steps=len(inp.messages))


@clitest.tool(timeout=30)
async def pair(inp: Pair, ctx: ToolContext) -> str:
    """Join the count and the label."""
    return f"{inp.count}{inp.label}"


class ToolBroke(RuntimeError):
    """Raised by ``clitest.fail`` on purpose."""


@clitest.tool(timeout=30)
async def fail(inp: Text, ctx: ToolContext) -> Text:
    """Always fail, with the text as the reason."""
    raise ToolBroke(inp.text)


@clitest.tool(timeout=60)
async def hang(inp: Nothing, ctx: ToolContext) -> Nothing:
    """Report that it started, then wait until cancelled or timed out."""
    await ctx.progress(0.0, "hanging")
    await anyio.sleep_forever()
    return inp
