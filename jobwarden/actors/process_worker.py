"""The child side of process mode: a worker process's loop, part of the ToolRunner.

Metrics are the parent's: its ToolRunner records them in a ``finally`` around the whole call to
a worker, which covers every way the child's call can end, a dead worker included.

A worker reads one ``Call`` at a time from its connection, imports the tool's function and input
type by reference, calls it under the call's resource limits and answers with one ``Reply``.
Everything crossing the boundary is msgspec MessagePack (an input holding an int past 64 bits
inside it as a pickle: ``Call.pickled``). The worker's stdin is ``/dev/null``, and its stdout and
stderr go there: a tool's prints must not land in the server's logs or a CLI's JSON output; what
it logs is sent to the parent ahead of the reply (``process_logs``). A worker leads a process
group of its own, which the parent signals whole (``process_pool``).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import pickle
import pkgutil
import resource
import signal
import typing
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any, Generic, TypeVar

import msgspec
from structlog.contextvars import bound_contextvars

from jobwarden.actors import process_logs
from jobwarden.errors import describe, plugin_failure, printable, unencodable
from jobwarden.plugins.context import ToolContext

READY = b"ready"
MIB = 1 << 20
In = TypeVar("In")


class Call(msgspec.Struct, Generic[In], frozen=True):
    """One tool call for a worker: what to import (``module:qualname``), the input, the limits.

    The parent encodes the input Struct in place, as builtins (``plain``: its bytes are copied
    once, into the message, not first into an encoded input and then again into the call); the
    worker reads it as
    ``msgspec.Raw``, a view of the message, decoded once it has imported the input type.
    ``pickled``: the input is a pickle of the input Struct instead (see ``process_pool``).
    """

    target: str
    input_type: str
    input: In
    job_id: str
    tool: str
    attempt: int
    memory_mb: int | None = None
    cpu_s: int | None = None
    trace: dict[str, str] | None = None  # the job's W3C trace context, when tracing is on
    pickled: bool = False


class Reply(msgspec.Struct, tag_field="kind"):
    """A worker's answer to one ``Call``, tagged by ``kind``."""


class Returned(Reply, tag="returned"):
    """The tool returned; ``output`` is its value, encoded."""

    output: msgspec.Raw


class Raised(Reply, tag="raised"):
    """The tool raised ``exception`` (module.qualname) with ``message``."""

    exception: str
    message: str


class OutOfMemory(Reply, tag="out_of_memory"):
    """The tool raised MemoryError, with ``memory_mb`` set or not."""

    message: str


class Pickled(Reply, tag="pickled"):
    """The tool returned a value holding an int past 64 bits, which MessagePack cannot carry:
    ``output`` is its pickle (the parent imports the same plugin modules)."""

    output: bytes


class Unencodable(Reply, tag="unencodable"):
    """The tool returned a value that cannot go back as its result: one neither MessagePack nor
    pickle can encode, or not the Struct its return type names."""

    message: str


Replies = Returned | Pickled | Raised | OutOfMemory | Unencodable


class Progressed(msgspec.Struct, tag="progressed", tag_field="kind"):
    """The tool reported progress (``ctx.progress_sync``), sent ahead of the call's reply;
    ``job_id`` and ``attempt`` name the call it reported for: a thread the tool left running
    may still report while the worker runs the next call, whose job it must not move."""

    fraction: float
    message: str | None
    job_id: str = ""
    attempt: int = 0


_encoder = msgspec.msgpack.Encoder()
_calls = msgspec.msgpack.Decoder(Call[msgspec.Raw])


def serve(conn: Connection) -> None:
    """The worker's main loop: answer calls until the parent closes the connection."""
    # A process group of its own, which the parent signals whole: processes a tool starts end
    # with the worker. Ctrl-C at a terminal no longer reaches it: the parent decides when its
    # workers stop.
    os.setpgid(0, 0)
    # fd 0 is the server's stdin, inherited: a tool reading it would take the server's input.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    process_logs.forward(conn)
    process_logs.send(conn, READY)
    while True:
        try:
            data = conn.recv_bytes()
        except EOFError:
            return
        # A thread the tool left running may still be logging: the reply waits its turn.
        process_logs.send(conn, handle(data, conn))


def handle(data: bytes, conn: Connection) -> bytes:
    """Run one encoded ``Call`` and return its encoded ``Reply``; what the tool reports as
    progress goes to the parent over ``conn`` meanwhile."""
    call = _calls.decode(data)
    ctx = ToolContext(
        job_id=call.job_id,
        tool=call.tool,
        attempt=call.attempt,
        progress=functools.partial(_progress, conn, call.job_id, call.attempt),
        progress_sync=functools.partial(_send_progress, conn, call.job_id, call.attempt),
    )
    try:
        # What the tool logs, its module's import included, names its job (``process_logs``
        # sends it to the parent).
        with (
            bound_contextvars(job_id=call.job_id, tool=call.tool, attempt=call.attempt),
            _traced(call.trace),
        ):
            func = _resolve(call.target)
            if call.pickled:
                inp = pickle.loads(msgspec.msgpack.decode(call.input, type=bytes))
            else:
                inp = msgspec.msgpack.decode(call.input, type=_resolve(call.input_type))
            with _limits(call.memory_mb, call.cpu_s):
                value = func(inp, ctx)
    except MemoryError as exc:
        said = printable(f"MemoryError: {exc}" if str(exc) else "MemoryError")
        reply: Replies = OutOfMemory(message=said)
    except BaseException as exc:
        if not plugin_failure(exc):
            raise
        # A class named from undecodable bytes (surrogateescape) would make the reply itself
        # unencodable, ending the worker.
        kind = printable(f"{type(exc).__module__}.{type(exc).__qualname__}")
        reply = Raised(exception=kind, message=describe(exc))
    else:
        struct = _returns_struct(call.target)
        if struct is not None and type(value) is not struct:
            # Decoded by type in the parent, a dict (or another Struct) of the same shape would
            # pass for it; the other modes accept only the Struct itself (Tool.output_to_builtins).
            got = f"Expected `{struct.__name__}`, got `{type(value).__name__}`"
            reply = Unencodable(message=printable(got))
        else:
            reply = _returned(value)
    return _encoder.encode(reply)


def _returned(value: Any) -> Replies:
    """The reply carrying the tool's ``value``, or saying why it cannot be encoded."""
    try:
        return Returned(output=msgspec.Raw(_encoder.encode(plain(value))))
    except TypeError as exc:
        return Unencodable(message=printable(str(exc)))
    except OverflowError:
        return _pickled(value)
    except (UnicodeEncodeError, RecursionError) as exc:
        # Raised out of here, any of these would end the worker: the job "crashed".
        return Unencodable(message=unencodable(exc))
    except Exception as exc:
        return Unencodable(message=describe(exc))


def plain(value: Any) -> Any:
    """``value`` as builtins, its datetimes as ISO 8601 strings (bytes left as they are).
    MessagePack's timestamp extension, msgspec's encoding of an aware datetime, keeps the instant
    but not the offset: 10:00+05:00 would arrive as 05:00+00:00, where the other modes keep it.
    Decoded by type, the string gives back the datetime; untyped, it stays the string the job's
    result stores either way."""
    return msgspec.to_builtins(value, builtin_types=(bytes, bytearray, memoryview))


def _pickled(value: Any) -> Replies:
    """The reply carrying ``value`` as a pickle: an int past 64 bits is a valid result (async
    and thread tools may return one), only MessagePack cannot carry it."""
    try:
        return Pickled(output=pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        return Unencodable(message=printable(describe(exc)))


def _traced(carrier: dict[str, str] | None) -> contextlib.AbstractContextManager[None]:
    """The job's trace context current during the call; opentelemetry is imported only for a
    call that carries one (its parent traces, so it is installed)."""
    if carrier is None:
        return contextlib.nullcontext()
    from jobwarden.tracing import continued

    return continued(carrier)


@functools.cache
def _resolve(ref: str) -> Any:
    return pkgutil.resolve_name(ref)


@functools.cache
def _returns_struct(target: str) -> type[msgspec.Struct] | None:
    """The Struct ``target``'s return annotation names, if it names one, as at registration."""
    try:
        returns = typing.get_type_hints(_resolve(target)).get("return")
    except Exception:
        # Registration resolved these hints in the parent: the parent's decode still checks.
        return None
    if isinstance(returns, type) and issubclass(returns, msgspec.Struct):
        return returns
    return None


async def _progress(
    conn: Connection, job_id: str, attempt: int, fraction: float, message: str | None
) -> None:
    """``await ctx.progress``, for a process tool that runs an event loop of its own."""
    _send_progress(conn, job_id, attempt, fraction, message)


def _send_progress(
    conn: Connection, job_id: str, attempt: int, fraction: float, message: str | None
) -> None:
    reported = Progressed(fraction=fraction, message=message, job_id=job_id, attempt=attempt)
    process_logs.send(conn, _encoder.encode(reported))


@contextlib.contextmanager
def _limits(memory_mb: int | None, cpu_s: int | None) -> Iterator[None]:
    """Lower the soft limits for one call and restore them after it (the hard ones stay); give
    it ``cpu_s`` CPU seconds, counted from its start, whatever the worker used before."""
    saved: list[tuple[int, tuple[int, int]]] = []
    if memory_mb is not None:
        saved.append(_lower(resource.RLIMIT_AS, memory_mb * MIB))
    if cpu_s is not None:
        # RLIMIT_CPU counts the whole process's life in whole seconds: rounded up, it would give
        # the call up to a second more on a worker that already ran others. It stays only as the
        # backstop for code that blocks SIGPROF or takes ITIMER_PROF for itself.
        usage = resource.getrusage(resource.RUSAGE_SELF)
        saved.append(
            _lower(resource.RLIMIT_CPU, math.ceil(usage.ru_utime + usage.ru_stime) + cpu_s)
        )
        # The budget itself: the process's CPU time (every thread's, user and system) from
        # now. SIGPROF, left at its default action, ends the worker in the kernel, whichever
        # thread burns the time and even inside C code; a Python handler would wait for the
        # main thread, which may be blocked joining the threads that burn it.
        signal.setitimer(signal.ITIMER_PROF, cpu_s)
    try:
        yield
    finally:
        if cpu_s is not None:
            signal.setitimer(signal.ITIMER_PROF, 0)  # never fires between calls
        for which, limits in saved:
            resource.setrlimit(which, limits)


def _lower(which: int, soft: int) -> tuple[int, tuple[int, int]]:
    limits = resource.getrlimit(which)
    hard = limits[1]
    resource.setrlimit(which, (soft if hard == resource.RLIM_INFINITY else min(soft, hard), hard))
    return which, limits
