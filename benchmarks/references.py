"""Reference designs the benchmarks measure jobwarden against, built from the same pieces.

Both run ``builtin.echo``'s function with the same input conversion and emit the same three
CloudEvents per job (queued, running, succeeded) to one subscriber; neither has a state machine,
a store, metrics or error envelopes.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream as ObjectReceiveStream
from anyio.streams.memory import MemoryObjectSendStream as ObjectSendStream

from jobwarden import EventData, JobEvent, JobState, ToolContext
from jobwarden.plugins.builtin import EchoIn, echo

DoneCallback = Callable[[], None]


class Job:
    __slots__ = ("id", "input")

    def __init__(self, job_id: str, payload: Any) -> None:
        self.id = job_id
        self.input = payload


class Events:
    """Numbers events and sends them to the one subscriber's stream."""

    def __init__(self, send: ObjectSendStream[JobEvent]) -> None:
        self._send = send
        self._next = 1

    def emit(self, job_id: str, state: JobState, result: Any = None) -> None:
        offset = self._next
        self._next += 1
        self._send.send_nowait(
            JobEvent(
                id=str(offset),
                source="jobwarden://reference",
                type="jobwarden.job." + state,
                subject=job_id,
                time=datetime.now(UTC),
                data=EventData(
                    job_id=job_id, tool="builtin.echo", state=state, attempt=1, result=result
                ),
            )
        )


async def _no_progress(fraction: float, message: str | None) -> None:
    return None


async def _call_echo(job: Job) -> Any:
    ctx = ToolContext(job_id=job.id, tool="builtin.echo", attempt=1, progress=_no_progress)
    with anyio.fail_after(10):
        out = await echo(msgspec.convert(job.input, EchoIn), ctx)
    return msgspec.to_builtins(out)


async def _subscriber(receive: ObjectReceiveStream[JobEvent], expected: int) -> None:
    seen = 0
    async for _ in receive:
        seen += 1
        if seen == expected:
            return


async def run_pool(jobs: int, workers: int = 64) -> None:
    """N long-lived workers pull plain job objects from one memory stream."""
    ev_send, ev_recv = anyio.create_memory_object_stream[JobEvent](math.inf)
    events = Events(ev_send)
    send, receive = anyio.create_memory_object_stream[Job](math.inf)

    async def worker() -> None:
        async for job in receive:
            events.emit(job.id, JobState.RUNNING)
            result = await _call_echo(job)
            events.emit(job.id, JobState.SUCCEEDED, result)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_subscriber, ev_recv, jobs * 3)
        for _ in range(workers):
            tg.start_soon(worker)
        for n in range(jobs):
            job = Job(f"{n:032x}", {"text": "hi"})
            events.emit(job.id, JobState.QUEUED)
            send.send_nowait(job)
        send.close()


async def naive_actor(job: Job, inbox: ObjectReceiveStream[str], events: Events) -> None:
    """The naive design's job actor: its own task, waiting on its own stream for the go message."""
    async with inbox:
        await inbox.receive()
        events.emit(job.id, JobState.RUNNING)
        result = await _call_echo(job)
        events.emit(job.id, JobState.SUCCEEDED, result)


async def run_naive(jobs: int) -> None:
    """One task and one memory stream per job: the job's task waits for its go message."""
    ev_send, ev_recv = anyio.create_memory_object_stream[JobEvent](math.inf)
    events = Events(ev_send)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_subscriber, ev_recv, jobs * 3)
        for n in range(jobs):
            job = Job(f"{n:032x}", {"text": "hi"})
            send, receive = anyio.create_memory_object_stream[str](1)
            events.emit(job.id, JobState.QUEUED)
            tg.start_soon(naive_actor, job, receive, events)
            send.send_nowait("run")
            send.close()


Runner = Callable[[int], Awaitable[None]]
