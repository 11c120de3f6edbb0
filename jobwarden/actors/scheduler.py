"""The run queue: which queued job a free ToolRunner takes next, within per-tool caps."""

from __future__ import annotations

import asyncio
from collections import deque

import anyio

from jobwarden.actors.job_actor import JobActor
from jobwarden.actors.loop_calls import checkpoint

# Runners take ready jobs without yielding, but yield this often so that submitters,
# subscribers and other runners still get the loop when the queue is long.
YIELD_EVERY = 8

# What an idle runner waits on until a job is admitted for it. On asyncio a bare future: two
# gc-tracked objects while it waits (the future and its iterator) where an anyio Event costs
# seven (two events, a deque, a future, its iterator, two coroutines), and with every runner of a
# large pool parked, each cyclic gc pass walks all of them. Other backends get an anyio Event.
_Wakeup = asyncio.Future[None] | anyio.Event


def _wake(wakeup: _Wakeup) -> bool:
    """Wake the runner waiting on ``wakeup``; False if it already stopped waiting (cancelled)."""
    if isinstance(wakeup, asyncio.Future):
        if wakeup.done():
            return False
        wakeup.set_result(None)
    else:
        wakeup.set()  # a cancelled waiter sees it set, and passes the wake-up on
    return True


def _woken(wakeup: _Wakeup) -> bool:
    if isinstance(wakeup, asyncio.Future):
        return wakeup.done() and not wakeup.cancelled()
    return wakeup.is_set()


class _ToolSlot:
    __slots__ = ("active", "cap", "parked")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.active = 0
        self.parked: deque[JobActor] = deque()


class Scheduler:
    """A FIFO of runnable job actors; a tool at its cap parks its jobs until a slot frees up.

    At most ``concurrency`` jobs are taken at once (the number of ToolRunners pulling from
    here, so a runner that waits for each start never meets the cap): ``release`` must be called
    once for every job taken, when its run is over. A job a runner started ahead (its running
    change queued, not waited for: ``ahead_pending``) keeps its place among them and comes back
    from ``next`` once the change is committed (``ahead_ready``), before any queued job, to be
    run; it is released after that run. Idle runners wait on an event each, and a busy runner
    takes waiting jobs without waiting at all.

    While jobs are ready, runners enough to take them in the next turn of the event loop are on
    their way: a job made ready wakes an idle runner only when more than ``YIELD_EVERY`` ready
    jobs would fall to each runner woken already (a runner takes that many before it yields),
    and a runner that takes a job while more are ready wakes the next one if none is on its way,
    in case this job keeps it (a tool that awaits). So the jobs admitted in one turn wake one
    runner per ``YIELD_EVERY`` of them, which take them one after another while they do not
    block, and one more, instead of a runner each that mostly finds its job already taken and
    parks again.
    """

    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency
        self._taken = 0  # jobs handed out and not released yet
        self._ahead: deque[JobActor] = deque()  # started ahead and committed: to be run
        self._pending = 0  # started ahead, the running change not committed yet
        self._ready: deque[JobActor] = deque()
        self._idle: deque[_Wakeup] = deque()
        self._waking = 0  # runners woken that have not taken the loop yet
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_known = False
        self._slots: dict[str, _ToolSlot] = {}
        self._pulls = 0
        self._closed = False
        self._parked_target = 0
        self._all_parked: anyio.Event | None = None

    async def wait_runners_parked(self, count: int) -> None:
        """Return once ``count`` runners wait in ``next`` (or jobs already keep them busy)."""
        if len(self._idle) >= count or self._ready:
            return
        self._parked_target = count
        self._all_parked = anyio.Event()
        await self._all_parked.wait()
        self._all_parked = None

    def admit(self, actor: JobActor) -> None:
        """Make a queued job runnable (or park it while its tool is at its cap)."""
        if self._all_parked is not None:
            self._all_parked.set()  # jobs arrived during start-up: runners are busy, not parked
        cap = actor.tool.max_concurrency
        if cap is not None:
            slot = self._slots.get(actor.tool.name)
            if slot is None:
                slot = self._slots[actor.tool.name] = _ToolSlot(cap)
            if slot.active >= cap:
                slot.parked.append(actor)
                return
            slot.active += 1
        self._ready.append(actor)
        if len(self._ready) > self._waking * YIELD_EVERY and self._taken < self._concurrency:
            self._wake_one()

    @property
    def pending_starts(self) -> int:
        """Jobs started ahead whose running change is not committed yet."""
        return self._pending

    def ahead_pending(self) -> None:
        """A job taken was started ahead: its commit is on its way to ``ahead_ready``."""
        self._pending += 1

    def ahead_ready(self, actor: JobActor) -> None:
        """The running change of a job started ahead is committed: a runner is to run it."""
        self._pending -= 1
        self._ahead.append(actor)
        if len(self._ahead) > self._waking * YIELD_EVERY:
            self._wake_one()

    async def next(self) -> JobActor | None:
        """The next job to run or start, waiting for one; None once the scheduler is closed and
        no job started ahead is left to run."""
        if self._closed and not self._ahead and not self._pending:
            return None
        self._pulls += 1
        if self._pulls % YIELD_EVERY == 0:
            await checkpoint()
        ahead = self._ahead
        ready = self._ready
        # Spelled out rather than a helper: this runs for every job.
        while not ahead and not (ready and self._taken < self._concurrency and not self._closed):
            if self._closed and not self._pending:
                return None
            woken = self._wakeup()
            self._idle.append(woken)
            if self._all_parked is not None and len(self._idle) >= self._parked_target:
                self._all_parked.set()
            try:
                if isinstance(woken, asyncio.Future):
                    await woken
                else:
                    await woken.wait()
            except BaseException:
                if _woken(woken):
                    self._waking -= 1
                    self._wake_one()  # the job meant for us must not wait for another admit
                elif woken in self._idle:  # (a cancelled future may have been skipped already)
                    self._idle.remove(woken)
                raise
            self._waking -= 1
        if ahead:
            actor = ahead.popleft()
            if (ahead or (ready and self._taken < self._concurrency)) and not self._waking:
                self._wake_one()
            return actor
        actor = ready.popleft()
        self._taken += 1
        if ready and not self._waking and self._taken < self._concurrency:
            self._wake_one()
        return actor

    def release(self, actor: JobActor) -> None:
        """A job taken by ``next`` is done with its slot: let a parked job of that tool in."""
        self._taken -= 1
        if self._taken == self._concurrency - 1 and self._ready and not self._waking:
            self._wake_one()  # the cap held queued jobs back, and nobody is on the way for them
        if actor.tool.max_concurrency is None:
            return
        slot = self._slots[actor.tool.name]
        slot.active -= 1
        while slot.parked and not self._closed:
            waiting = slot.parked.popleft()
            if not waiting.record.state.terminal:
                slot.active += 1
                self._ready.append(waiting)
                if len(self._ready) > self._waking * YIELD_EVERY:
                    self._wake_one()
                return

    def close(self) -> None:
        """Stop handing out jobs; runners waiting in ``next`` get None."""
        self._closed = True
        idle, self._idle = self._idle, deque()
        for woken in idle:
            if _wake(woken):
                self._waking += 1

    def _wake_one(self) -> None:
        idle = self._idle
        while idle:
            if _wake(idle.popleft()):
                self._waking += 1
                return

    def _wakeup(self) -> _Wakeup:
        if not self._loop_known:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                self._loop = None  # not asyncio (trio)
            self._loop_known = True
        if self._loop is not None:
            return self._loop.create_future()
        return anyio.Event()
