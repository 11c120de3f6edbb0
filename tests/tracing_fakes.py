"""Tools that report the OpenTelemetry span current while they run, in each execution mode.

Process tools are imported by reference in the worker, so they live at module level here.
"""

from __future__ import annotations

import msgspec
from opentelemetry import trace

from jobwarden import Plugin, ToolContext


class Nothing(msgspec.Struct):
    pass


class SpanIds(msgspec.Struct):
    """The current span's trace and span id, in hex (all zeros when no span is current)."""

    trace_id: str
    span_id: str


traced = Plugin("traced", version="0.1.0")


def _current() -> SpanIds:
    context = trace.get_current_span().get_span_context()
    return SpanIds(trace_id=f"{context.trace_id:032x}", span_id=f"{context.span_id:016x}")


@traced.tool(timeout=10)
async def in_task(inp: Nothing, ctx: ToolContext) -> SpanIds:
    """The span current in the runner's task."""
    return _current()


@traced.tool(mode="thread", timeout=10)
def in_thread(inp: Nothing, ctx: ToolContext) -> SpanIds:
    """The span current in a worker thread."""
    return _current()


@traced.tool(mode="process", timeout=60)
def in_process(inp: Nothing, ctx: ToolContext) -> SpanIds:
    """The span current in a worker process."""
    return _current()


@traced.tool(timeout=10)
async def fails(inp: Nothing, ctx: ToolContext) -> SpanIds:
    """Raise while the job's span is current."""
    raise RuntimeError("on purpose")
