"""ToolContext: what a running tool sees of its job."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import pytest
import structlog.testing

from tests.fakes import UNDECODABLE
from tests.plugins.fakes import ProgressSink, make_context


@pytest.mark.anyio
@pytest.mark.parametrize(
    "fraction",
    [math.nan, math.inf, -math.inf, -0.01, 1.01, -1, 2, 10**400, "0.5", None, Fraction(1, 2)],
    ids=[
        "nan",
        "inf",
        "-inf",
        "below0",
        "above1",
        "int-1",
        "int2",
        "huge-int",
        "str",
        "none",
        "fraction",
    ],
)
async def test_invalid_progress_raises_value_error(fraction: Any) -> None:
    """Progress that is not a finite number in [0, 1] raises ValueError and reaches no sink."""
    sink = ProgressSink()
    ctx = make_context(sink)
    with pytest.raises(ValueError, match="progress must be"):
        await ctx.progress(fraction)
    assert sink.calls == []


@pytest.mark.anyio
async def test_valid_progress_reaches_the_sink_as_floats() -> None:
    """Valid progress values, ints included, reach the sink as floats with their messages."""
    sink = ProgressSink()
    ctx = make_context(sink)
    await ctx.progress(0)
    await ctx.progress(0.25, "a quarter")
    await ctx.progress(1, "done")
    assert sink.calls == [(0.0, None), (0.25, "a quarter"), (1.0, "done")]
    assert all(type(fraction) is float for fraction, _ in sink.calls)


@pytest.mark.anyio
async def test_progress_after_the_attempt_ended_reaches_no_sink() -> None:
    """Once the runtime ends the context's attempt, its progress reports are dropped."""
    sink = ProgressSink()
    ctx = make_context(sink)
    await ctx.progress(0.5, "during")
    ctx.end()
    await ctx.progress(0.9, "after")
    assert sink.calls == [(0.5, "during")]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("message", "error", "says"),
    [
        (123, TypeError, "must be a str or None, got int"),
        (b"bytes", TypeError, "must be a str or None, got bytes"),
        (UNDECODABLE, ValueError, "must be valid Unicode"),
    ],
    ids=["int", "bytes", "lone-surrogate"],
)
async def test_a_progress_message_no_event_could_carry_is_refused(
    message: Any, error: type[Exception], says: str
) -> None:
    """A message that is not a str, or holds a lone surrogate, is refused at the call, before
    any event carries it (a stored event would fail every later read); non-ASCII text is fine."""
    sink = ProgressSink()
    ctx = make_context(sink)
    with pytest.raises(error, match=says):
        await ctx.progress(0.5, message)
    await ctx.progress(0.5, "café ✓")
    assert sink.calls == [(0.5, "café ✓")]


def test_identity_attributes() -> None:
    """The context carries the job id, tool name and attempt it was made with."""
    ctx = make_context(ProgressSink(), job_id="j", tool="p.t", attempt=3)
    assert (ctx.job_id, ctx.tool, ctx.attempt) == ("j", "p.t", 3)


def test_log_is_bound_to_job_tool_and_attempt() -> None:
    """ctx.log entries carry job_id, tool and attempt."""
    ctx = make_context(ProgressSink(), job_id="j-9", tool="demo.echo", attempt=2)
    with structlog.testing.capture_logs() as logs:
        ctx.log.info("working", step=1)
    assert logs == [
        {
            "event": "working",
            "step": 1,
            "job_id": "j-9",
            "tool": "demo.echo",
            "attempt": 2,
            "log_level": "info",
        }
    ]


def test_log_is_made_once() -> None:
    """The bound logger is created on first use and the same one is reused afterwards."""
    ctx = make_context(ProgressSink())
    assert ctx.log is ctx.log


def test_cancel_requested_starts_false_and_sticks() -> None:
    """cancel_requested is False until request_cancel() and stays True after it."""
    ctx = make_context(ProgressSink())
    assert ctx.cancel_requested is False
    ctx.request_cancel()
    assert ctx.cancel_requested is True
    ctx.request_cancel()
    assert ctx.cancel_requested is True
