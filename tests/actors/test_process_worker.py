"""The worker's side of a call, run in this process: every reply kind, and limits restored."""

from __future__ import annotations

import resource
from typing import Any

import msgspec
import pytest
from structlog.contextvars import get_contextvars

from jobwarden.actors.process_worker import (
    Call,
    OutOfMemory,
    Raised,
    Replies,
    Returned,
    Unencodable,
    handle,
)
from jobwarden.plugins.context import ToolContext
from jobwarden.plugins.tool import reference
from tests.process_fakes import NumberIn, NumberOut, raises, square, unencodable

_replies = msgspec.msgpack.Decoder(Replies)


def out_of_memory(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Raise MemoryError as an allocation past RLIMIT_AS would."""
    raise MemoryError


def job_id_of(inp: NumberIn, ctx: ToolContext) -> str:
    """Return the job id the worker's context carries."""
    return ctx.job_id


def bound_job_of(inp: NumberIn, ctx: ToolContext) -> str:
    """Return the job id bound for the call's log lines."""
    return str(get_contextvars()["job_id"])


def run(func: Any, n: int = 0, **limits: int) -> Replies:
    call = Call(
        target=reference(func),
        input_type=reference(NumberIn),
        input=msgspec.Raw(msgspec.msgpack.encode(NumberIn(n=n))),
        job_id="job-1",
        tool="procs.x",
        attempt=1,
        **limits,
    )
    reply: Replies = _replies.decode(handle(msgspec.msgpack.encode(call)))
    return reply


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
    ],
)
def test_failures_become_replies(func: Any, expected: Replies) -> None:
    """Exceptions, memory errors and unencodable results each come back as their own reply."""
    assert run(func) == expected


def test_limits_apply_during_the_call_only() -> None:
    """memory_mb and cpu_s lower the soft limits for the call and are restored after it."""
    before = [resource.getrlimit(which) for which in (resource.RLIMIT_AS, resource.RLIMIT_CPU)]
    assert isinstance(run(square, 2, memory_mb=1 << 20, cpu_s=3600), Returned)
    after = [resource.getrlimit(which) for which in (resource.RLIMIT_AS, resource.RLIMIT_CPU)]
    assert after == before
