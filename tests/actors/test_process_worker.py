"""The worker's side of a call, run in this process: every reply kind, and limits restored."""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import pickle
import resource
import signal
from typing import Any

import msgspec
import pytest
from structlog.contextvars import get_contextvars

from jobwarden.actors.process_worker import (
    Call,
    OutOfMemory,
    Pickled,
    Progressed,
    Raised,
    Replies,
    Returned,
    Unencodable,
    handle,
)
from jobwarden.plugins.context import ToolContext
from jobwarden.plugins.tool import reference
from tests.process_fakes import (
    NumberIn,
    NumberOut,
    as_dict,
    huge,
    raises,
    raises_oddly,
    square,
    unencodable,
)

_replies = msgspec.msgpack.Decoder(Replies)


def out_of_memory(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Raise MemoryError as an allocation past RLIMIT_AS would."""
    raise MemoryError


def cpu_timer_left(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Return the whole CPU seconds left on the process's CPU timer (ITIMER_PROF)."""
    return NumberOut(n=math.floor(signal.getitimer(signal.ITIMER_PROF)[0]))


def job_id_of(inp: NumberIn, ctx: ToolContext) -> str:
    """Return the job id the worker's context carries."""
    return ctx.job_id


def bound_job_of(inp: NumberIn, ctx: ToolContext) -> str:
    """Return the job id bound for the call's log lines."""
    return str(get_contextvars()["job_id"])


def reports_progress(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Report n steps of progress with progress_sync, then return n."""
    for step in range(1, inp.n + 1):
        ctx.progress_sync(step / inp.n, f"step {step}")
    return NumberOut(n=inp.n)


def reports_bad_progress(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Report a fraction past 1."""
    ctx.progress_sync(2)
    return NumberOut(n=inp.n)


def runs_its_own_loop(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Await ctx.progress inside an event loop the tool runs itself."""

    async def main() -> NumberOut:
        await ctx.progress(0.5, "halfway")
        return NumberOut(n=inp.n)

    return asyncio.run(main())


def run(
    func: Any,
    n: int = 0,
    sent: list[Progressed] | None = None,
    *,
    memory_mb: int | None = None,
    cpu_s: int | None = None,
) -> Replies:
    """``handle`` one call of ``func``; what it sends ahead of its reply goes into ``sent``."""
    call = Call(
        target=reference(func),
        input_type=reference(NumberIn),
        input=msgspec.Raw(msgspec.msgpack.encode(NumberIn(n=n))),
        job_id="job-1",
        tool="procs.x",
        attempt=1,
        memory_mb=memory_mb,
        cpu_s=cpu_s,
    )
    ours, theirs = multiprocessing.Pipe()
    try:
        reply: Replies = _replies.decode(handle(msgspec.msgpack.encode(call), theirs))
        while ours.poll():
            message = _progressed.decode(ours.recv_bytes())
            if sent is not None:
                sent.append(message)
    finally:
        ours.close()
        theirs.close()
    return reply


_progressed = msgspec.msgpack.Decoder(Progressed)


def test_progress_sync_sends_each_report_ahead_of_the_reply() -> None:
    """A process tool's progress_sync reports go to the parent in order, before its reply, each
    naming its job and attempt."""
    sent: list[Progressed] = []
    reply = run(reports_progress, 3, sent)
    assert isinstance(reply, Returned)
    assert sent == [
        Progressed(fraction=1 / 3, message="step 1", job_id="job-1", attempt=1),
        Progressed(fraction=2 / 3, message="step 2", job_id="job-1", attempt=1),
        Progressed(fraction=1.0, message="step 3", job_id="job-1", attempt=1),
    ]


def test_a_tool_with_its_own_event_loop_can_await_progress() -> None:
    """A process tool that runs asyncio itself may await ctx.progress: it is sent the same way."""
    sent: list[Progressed] = []
    reply = run(runs_its_own_loop, 2, sent)
    assert isinstance(reply, Returned)
    assert sent == [Progressed(fraction=0.5, message="halfway", job_id="job-1", attempt=1)]


def test_a_bad_fraction_fails_the_call_and_sends_nothing() -> None:
    """progress_sync checks the fraction in the worker: the tool raises ValueError."""
    sent: list[Progressed] = []
    reply = run(reports_bad_progress, 1, sent)
    assert reply == Raised(
        exception="builtins.ValueError", message="ValueError: progress must be in [0, 1], got 2"
    )
    assert sent == []


def test_a_return_value_comes_back_encoded() -> None:
    """A returned value is encoded in a Returned reply, and the context names the job."""
    reply = run(square, 7)
    assert isinstance(reply, Returned)
    assert msgspec.msgpack.decode(reply.output, type=NumberOut) == NumberOut(n=49)
    named = run(job_id_of)
    assert isinstance(named, Returned)
    assert msgspec.msgpack.decode(named.output) == "job-1"


def test_the_call_s_log_bindings_end_with_it() -> None:
    """During the call its job is bound for log lines; afterwards nothing the call bound is."""
    reply = run(bound_job_of)
    assert isinstance(reply, Returned)
    assert msgspec.msgpack.decode(reply.output) == "job-1"
    assert "job_id" not in get_contextvars()


@pytest.mark.parametrize(
    ("func", "expected"),
    [
        (raises, Raised(exception="builtins.ValueError", message="ValueError: bad n 0")),
        (out_of_memory, OutOfMemory(message="MemoryError")),
        (unencodable, Unencodable(message="Encoding objects of type object is unsupported")),
        (huge, Pickled(output=pickle.dumps(2**70, protocol=pickle.HIGHEST_PROTOCOL))),
        (as_dict, Unencodable(message="Expected `NumberOut`, got `dict`")),
        (raises_oddly, Raised(exception="plugins.caf\\udcff.Oddly", message="Oddly: odd")),
    ],
)
def test_failures_become_replies(func: Any, expected: Replies) -> None:
    """Exceptions, memory errors, unencodable results and results only pickle can carry each
    come back as their own reply."""
    assert run(func) == expected


def test_limits_apply_during_the_call_only() -> None:
    """memory_mb and cpu_s lower the soft limits for the call, cpu_s arms the CPU timer for
    it, and all are restored after it: the timer cannot fire between calls."""
    before = [resource.getrlimit(which) for which in (resource.RLIMIT_AS, resource.RLIMIT_CPU)]
    reply = run(cpu_timer_left, memory_mb=1 << 20, cpu_s=3600)
    assert isinstance(reply, Returned)
    assert 3590 < msgspec.msgpack.decode(reply.output, type=NumberOut).n <= 3600
    after = [resource.getrlimit(which) for which in (resource.RLIMIT_AS, resource.RLIMIT_CPU)]
    assert after == before
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
