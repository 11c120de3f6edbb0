"""The ``builtin`` plugin: small tools used by the tests, the benchmarks and the README."""

from __future__ import annotations

import hashlib
from typing import Annotated

import anyio
import msgspec

from jobwarden.plugins.context import ToolContext
from jobwarden.plugins.tool import Plugin

builtin = Plugin("builtin", version="1.0.0", description="Reference tools shipped with jobwarden.")


class EchoIn(msgspec.Struct, forbid_unknown_fields=True):
    """Text to send back."""

    text: str


class EchoOut(msgspec.Struct):
    """The text, unchanged."""

    text: str


class SleepIn(msgspec.Struct, forbid_unknown_fields=True):
    """How long to sleep, and how many progress reports to make on the way."""

    seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400)]
    steps: Annotated[int, msgspec.Meta(ge=0, le=1_000)] = 0


class SleepOut(msgspec.Struct):
    """How long was slept."""

    slept_s: float


class FailIn(msgspec.Struct, forbid_unknown_fields=True):
    """The message the failure carries."""

    message: str = "failure requested"


class FailOut(msgspec.Struct):
    """Never produced: ``fail`` always raises."""


class Sha256In(msgspec.Struct, forbid_unknown_fields=True):
    """Bytes to hash (base64 in JSON)."""

    data: bytes


class Sha256Out(msgspec.Struct):
    """The hex digest and the number of bytes hashed."""

    hexdigest: str
    size: int


class RequestedFailure(RuntimeError):
    """Raised by ``builtin.fail`` on purpose."""


@builtin.tool(timeout=10.0)
async def echo(inp: EchoIn, ctx: ToolContext) -> EchoOut:
    """Return the given text."""
    return EchoOut(text=inp.text)


@builtin.tool(timeout=86_400.0)
async def sleep(inp: SleepIn, ctx: ToolContext) -> SleepOut:
    """Sleep cooperatively (cancellable at any moment), reporting progress ``steps`` times."""
    if inp.steps:
        for step in range(1, inp.steps + 1):
            await anyio.sleep(inp.seconds / inp.steps)
            await ctx.progress(step / inp.steps, f"step {step} of {inp.steps}")
    else:
        await anyio.sleep(inp.seconds)
    return SleepOut(slept_s=inp.seconds)


@builtin.tool(timeout=10.0)
async def fail(inp: FailIn, ctx: ToolContext) -> FailOut:
    """Always fail with the given message."""
    raise RequestedFailure(inp.message)


@builtin.tool(timeout=60.0, mode="thread")
def sha256(inp: Sha256In, ctx: ToolContext) -> Sha256Out:
    """Hash the given bytes with SHA-256 (in a worker thread: hashing releases the GIL)."""
    return Sha256Out(hexdigest=hashlib.sha256(inp.data).hexdigest(), size=len(inp.data))
