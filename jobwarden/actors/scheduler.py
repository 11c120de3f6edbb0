"""The run queue: which queued job a free ToolRunner takes next, within per-tool caps."""

from __future__ import annotations

import math
from collections import deque

import anyio
from anyio.lowlevel import checkpoint
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from jobwarden.actors.job_actor import JobActor

# Runners take ready jobs without yielding, but yield this often so that submitters,
# subscribers and other runners still get the loop when the queue is long.
YIELD_EVERY = 8


class _ToolSlot:
    __slots__ = ("active", "cap", "parked")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.active = 0
        self.parked: deque[JobActor] = deque()


class Scheduler:
    """A FIFO of runnable job actors; a tool at its cap parks its jobs until a slot frees up.

    The global cap is the number of ToolRunners pulling from here. ``release`` must be called once
    for every actor ``next`` returned.
    """

    def __init__(self) -> None:
        # The streams exist only between open() and close(), so nothing leaks from a
        # supervisor that was never started.
        self._send: MemoryObjectSendStream[JobActor]
        self._receive: MemoryObjectReceiveStream[JobActor]
        self._slots: dict[str, _ToolSlot] = {}
        self._pulls = 0
        self._closed = False

    def open(self) -> None:
        """Create the queue; called once when the supervisor starts."""
        self._send, self._receive = anyio.create_memory_object_stream[JobActor](math.inf)

    def admit(self, actor: JobActor) -> None:
        """Make a queued job runnable (or park it while its tool is at its cap)."""
        cap = actor.tool.max_concurrency
        if cap is not None:
            slot = self._slots.get(actor.tool.name)
            if slot is None:
                slot = self._slots[actor.tool.name] = _ToolSlot(cap)
            if slot.active >= cap:
                slot.parked.append(actor)
                return
            slot.active += 1
        self._send.send_nowait(actor)

    async def next(self) -> JobActor | None:
        """The next runnable job, waiting for one; None once the scheduler is closed."""
        if self._closed:
            return None
        self._pulls += 1
        if self._pulls % YIELD_EVERY == 0:
            await checkpoint()
            if self._closed:
                return None
        try:
            return self._receive.receive_nowait()
        except anyio.WouldBlock:
            pass
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None
        try:
            actor = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None
        if self._closed:
            # Taken from the queue after close: it stays queued (and may be recovered later).
            self.release(actor)
            return None
        return actor

    def release(self, actor: JobActor) -> None:
        """A job taken by ``next`` is done with its slot: let a parked job of that tool in."""
        if actor.tool.max_concurrency is None:
            return
        slot = self._slots[actor.tool.name]
        slot.active -= 1
        while slot.parked and not self._closed:
            waiting = slot.parked.popleft()
            if not waiting.record.state.terminal:
                slot.active += 1
                self._send.send_nowait(waiting)
                return

    def close(self) -> None:
        """Stop handing out jobs; runners waiting in ``next`` get None."""
        self._closed = True
        if hasattr(self, "_send"):
            self._send.close()
            self._receive.close()
