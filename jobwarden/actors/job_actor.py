"""The job actor: owns one job's record and moves it through the state machine, message by message.

A job actor has no task of its own. Its mailbox is driven by whoever sends it a message (the
supervisor, a ToolRunner, a cancelling client), so a queued job costs only a few small objects.
Every state change is checked against the transition table, stored, and then published as
exactly one event.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

import anyio
import msgspec

from jobwarden.actors import start_limits
from jobwarden.actors.event_bus import EventBus
from jobwarden.actors.loop_calls import current_time, new_event
from jobwarden.actors.mailbox import Mailbox
from jobwarden.actors.states import QUEUED, RUNNING, JobState, check_transition
from jobwarden.errors import (
    ActorStopped,
    ErrorInfo,
    JobFinished,
    OutcomeType,
    StoreError,
    StoreUnavailable,
)
from jobwarden.plugins.context import ToolContext
from jobwarden.plugins.registry import PluginRegistry
from jobwarden.plugins.tool import Tool
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.base import JobStore, WriteBehind
from jobwarden.store.shared import SharedStore, Verdict

CANCEL_REASON = "cancelled before it started"
Lost = Callable[[StoreError], None]
"""Told when a job's change, queued write-behind, could not be stored."""

_FINAL_KIND = {
    JobState.SUCCEEDED: "succeeded",
    JobState.FAILED: "failed",
    JobState.TIMED_OUT: "timed_out",
    JobState.CANCELLED: "cancelled",
}


class Superseded(Exception):
    """The stored job moved on without this node (a cluster's compare-and-set write failed): the
    job was cancelled or taken over elsewhere, and this node must let it go."""


class AtCap(Exception):
    """The job cannot start yet: its tool is at its concurrency cap on the cluster."""


class JobHost(Protocol):
    """What a job actor needs from the runtime that holds it; ``shared`` is set on a cluster
    node, whose writes are compare-and-set."""

    store: JobStore
    store_behind: WriteBehind | None
    """``store`` if it writes behind (``write_behind(store)``, looked up once), else None."""
    bus: EventBus
    registry: PluginRegistry
    shared: SharedStore | None

    def job_started(self, actor: JobActor) -> None:
        """The job entered running."""

    def job_finished(self, actor: JobActor, *, started: bool) -> None:
        """The job reached a terminal state; ``started`` says whether it ever ran."""

    def job_retrying(self, actor: JobActor, delay: float) -> None:
        """The job's attempt failed and it is queued again: admit it after ``delay`` seconds."""

    def job_dropped(self, actor: JobActor, *, started: bool) -> None:
        """The job was superseded elsewhere: forget it without counting an outcome."""

    def job_at_cap(self, actor: JobActor, generation: int) -> None:
        """The job could not start (``AtCap``); ``generation`` was read before it tried."""

    def cap_generation(self, tool: str) -> int:
        """A counter of ``tool``'s slots seen freed on the cluster."""


class Started(msgspec.Struct, frozen=True, gc=False):
    """What a runner needs to execute a job it just started; ``deadline`` is on anyio's clock.

    ``timeout_message`` says what the deadline is, for the error if it is reached, when it is
    the tool's total timeout (less of it was left than the attempt's timeout); empty when it is
    the attempt's timeout, whose message is written only if it is reached. Untracked by the
    cyclic gc (one object fewer per running job for it to walk): nothing it holds refers back
    to it.
    """

    ctx: ToolContext
    args: msgspec.Struct
    deadline: float
    timeout_message: str = ""


class StartedAhead:
    """What ``JobActor.start`` answers when the running change was queued ahead: the job comes
    back to a runner through ``Ahead`` once it is committed (see ``start``)."""

    __slots__ = ()


AHEAD = StartedAhead()


class Ahead(Protocol):
    """Where a job started ahead goes once its running change is committed (the scheduler)."""

    def ahead_pending(self) -> None:
        """A job's running change was queued ahead: its ``ahead_ready`` will follow."""

    def ahead_ready(self, actor: JobActor) -> None:
        """The job's running change is committed: hand it to a runner to execute."""


_Message = Callable[[], Awaitable[Any]]
"""A message to a job actor: the call of its handler, bound to the message's arguments with
``functools.partial`` (no message class to build and match on for each of a job's changes)."""


def _call(message: _Message) -> Awaitable[Any]:
    return message()


class JobActor:
    """One job: its current record, the tool it runs, and the messages that change it."""

    __slots__ = (
        "_ahead",
        "_args",
        "_ctx",
        "_done",
        "_ending",
        "_host",
        "_mailbox",
        "_scope",
        "queue_alarm",
        "queue_deadline",
        "record",
        "tool",
    )

    def __init__(self, host: JobHost, record: JobRecord, tool: Tool, args: msgspec.Struct) -> None:
        self._host = host
        self.record = record
        self.tool = tool
        self._args: msgspec.Struct | None = args
        # Only a cluster node's writes can find the job superseded: elsewhere each message is
        # called as it is, without a coroutine around it to catch that.
        handler = self._receive if host.shared is not None else _call
        self._mailbox: Mailbox[_Message, Any] = Mailbox(handler, name=record.id)
        self._scope: anyio.CancelScope | None = None
        self._ctx: ToolContext | None = None
        self._ahead: Started | None = None
        self._done: anyio.Event | None = None
        # True while the terminal transition is queued write-behind: the job has its outcome and
        # takes no other change, though its record says running until the commit lands.
        self._ending = False
        # Set by the supervisor when the tool has a queue timeout: the anyio time by which an
        # attempt must start, and the key of the deadline entry that enforces it.
        self.queue_deadline = math.inf
        self.queue_alarm: int | None = None

    @property
    def id(self) -> str:
        """The job's id."""
        return self.record.id

    def start(
        self, *, lost: Lost | None = None, ahead: Ahead | None = None
    ) -> Awaitable[Started | StartedAhead | None]:
        """Move queued -> running; None when the job is no longer queued (it was cancelled).

        The change is committed before the awaitable returns, unless the store writes behind
        and ``lost`` is given (to be told if the commit fails). Then a tool that says
        ``retry_on_interrupt`` starts at once (a crash runs such a job again anyway); for any
        other, given ``ahead``, the answer is ``AHEAD`` at once and the job goes to
        ``ahead.ahead_ready`` once the change is committed, to be executed with
        ``take_started()``: the caller need not wait for the commit, and the jobs whose changes
        one commit stored go on together rather than each waking its own waiting task.
        """
        return self._mailbox.ask_or(partial(self._on_start, lost, ahead), None)

    def take_started(self) -> Started | None:
        """What a runner needs to execute the job, once started ahead and committed (once)."""
        started, self._ahead = self._ahead, None
        return started

    def finish(
        self,
        state: JobState,
        result: Any = None,
        error: ErrorInfo | None = None,
        *,
        lost: Lost | None = None,
    ) -> Awaitable[None]:
        """Move running -> a terminal ``state`` with the run's result or error.

        The awaitable returns once the change is committed; but given ``lost`` (to be told if
        the commit fails, the record then staying running) and a write-behind store, once it is
        queued: the record, the subscribers and the job's waiters see it when it is committed.
        Nothing happens when the job was dropped (superseded on another node of a cluster).
        """
        return self._mailbox.ask_or(partial(self._on_finish, state, result, error, lost), None)

    async def fail_crashed(self) -> None:
        """End a running job whose runner crashed: failed, with error type ``crashed``."""
        error = self.error(OutcomeType.CRASHED, "the runner crashed while running the job")
        await self.finish(JobState.FAILED, None, error)

    def error(self, kind: OutcomeType, message: str, **details: Any) -> ErrorInfo:
        """An error envelope body about this job."""
        record = self.record
        return ErrorInfo(
            type=kind,
            message=message,
            details=details,
            plugin=record.plugin,
            tool=record.tool,
            job_id=record.id,
        )

    async def cancel(self, reason: str) -> JobRecord | None:
        """Cancel now if queued (returns the record), or ask the running call to stop (None).

        Raises ``JobFinished`` when the job is already terminal.
        """
        try:
            cancelled: JobRecord | None = await self._mailbox.ask(partial(self._on_cancel, reason))
        except ActorStopped:
            raise JobFinished(
                f"job {self.id} is already {self.record.state}", job_id=self.id
            ) from None
        return cancelled

    async def cancel_requested(self) -> JobRecord | None:
        """A caller's cancel: ``cancel`` with the reason a queued job ends with, and
        ``StoreUnavailable`` when the store could not record it (the job keeps its state)."""
        try:
            return await self.cancel(CANCEL_REASON)
        except StoreError as exc:
            raise StoreUnavailable(f"the cancel was not recorded: {exc}", job_id=self.id) from exc

    async def progress(self, fraction: float, message: str | None) -> None:
        """Record progress of the running call; reports after the job ended are dropped."""
        try:
            await self._mailbox.tell(partial(self._on_progress, fraction, message))
        except ActorStopped:
            return

    async def wait_done(self) -> JobRecord:
        """Wait until the job is terminal and return its final record."""
        while not self.record.state.terminal:
            await self.done_event().wait()
        return self.record

    def done_event(self) -> anyio.Event:
        """The event set when the job ends; waiters re-check the state when it fires.

        A timed wait's alarm sets this same event when the wait times out (one event per job, not
        one per waiter), so an event found set on a job still running is replaced by a fresh one.
        """
        done = self._done
        if done is None or done.is_set():
            done = self._done = new_event()
        return done

    async def _receive(self, message: _Message) -> Any:
        try:
            return await message()
        except Superseded:
            self._drop()
        return None

    async def expire(self) -> None:
        """End the job as cancelled (error type ``timeout``) if it still waits to start."""
        try:
            await self._mailbox.ask(self._on_expire)
        except ActorStopped:
            return

    async def _on_expire(self) -> None:
        if self.record.state is QUEUED:
            await self._end_unstarted(OutcomeType.TIMEOUT, self._unstarted_message())

    async def _on_start(
        self, lost: Lost | None, ahead: Ahead | None
    ) -> Started | StartedAhead | None:
        record = self.record
        if record.state is not QUEUED or self._args is None:
            return None
        now = datetime.now(UTC)
        clock = current_time()
        if clock >= self.queue_deadline:
            await self._end_unstarted(OutcomeType.TIMEOUT, self._unstarted_message(now))
            return None
        limit = record.timeout_s or self.tool.timeout_s
        message = ""
        left = start_limits.total_left(self.tool, self.record, now)
        if left is not None and left <= 0:
            await self._end_unstarted(OutcomeType.TIMEOUT, start_limits.total_message(self.tool))
            return None
        if left is not None and (limit is None or left < limit):
            limit, message = left, start_limits.total_message(self.tool)
        # A retry's record holds the failed attempt's error while queued, not once it runs.
        new = msgspec.structs.replace(record, state=RUNNING, started_at=now, error=None)
        ctx = ToolContext(
            job_id=record.id, tool=record.tool, attempt=record.attempt, progress=self.progress
        )
        deadline = clock + limit if limit else math.inf
        started = Started(ctx=ctx, args=self._args, deadline=deadline, timeout_message=message)
        host = self._host
        cap = self.tool.max_concurrency if host.shared is not None else None
        store = host.store_behind if lost is not None else None
        if cap is not None:
            generation = host.cap_generation(self.tool.name)
            try:
                await self._change("running", new, at=now, cap=cap)
            except AtCap:
                host.job_at_cap(self, generation)
                return None
        elif store is not None and lost is not None and self.tool.retry_on_interrupt:
            self._start_soon(store, new, now, lost, None)
        elif store is not None and lost is not None and ahead is not None:
            self._start_soon(store, new, now, lost, (ahead, started))
            self._ctx = ctx
            return AHEAD
        else:
            # ``_change``, inlined here and for the outcome: one coroutine less per change.
            await commit_change(host, record, new, "running", at=now)
            self.record = new
        self._ctx = ctx
        host.job_started(self)
        return started

    def _start_soon(
        self,
        store: WriteBehind,
        new: JobRecord,
        at: datetime,
        lost: Lost,
        ahead: tuple[Ahead, Started] | None,
    ) -> None:
        """Queue the running change and go on; the event follows the commit, the record does
        not wait for it (the job's outcome, queued after it, cannot commit before it).

        Without ``ahead`` the tool is called at once (it may run again after a crash anyway).
        With it, the job counts as started only once the change is committed, and then goes to
        ``ahead`` with what a runner needs to execute it. Either way the record says running at
        once, so a cancel meanwhile asks the call to stop rather than ending a queued job.
        """
        check_transition(self.record.state, new.state)
        bus = self._host.bus
        event = bus.event(new, "running", at=at)
        # A partial, not a closure: two objects per job for the cyclic gc, not one per variable.
        committed = partial(self._start_committed, event, lost, ahead)
        try:
            store.transition_soon(new, event, committed)
        except BaseException:
            bus.abandon(event)
            raise
        if ahead is not None:
            ahead[0].ahead_pending()
        self.record = new

    def _start_committed(
        self,
        event: JobEvent,
        lost: Lost,
        ahead: tuple[Ahead, Started] | None,
        error: StoreError | None,
    ) -> None:
        """The running change queued by ``_start_soon`` is committed (None) or lost."""
        host = self._host
        if error is None:
            host.bus.deliver(event)
            if ahead is not None:
                host.job_started(self)
                self._ahead = ahead[1]
                ahead[0].ahead_ready(self)
            return
        host.bus.abandon(event)
        lost(error)

    def attach_scope(self, scope: anyio.CancelScope) -> None:
        """The scope the tool call runs in; a cancel that came first applies to it at once."""
        self._scope = scope
        if self._ctx is not None and self._ctx.cancel_requested:
            scope.cancel()

    def detach_scope(self) -> None:
        """The tool call returned: a later cancel must not touch the runner's scope."""
        self._scope = None

    async def _on_finish(
        self, state: JobState, result: Any, error: ErrorInfo | None, lost: Lost | None = None
    ) -> None:
        if self._ending:
            return  # a second finish (shutdown, a crashed runner): the first one stands
        now = datetime.now(UTC)
        policy = self.tool.retry
        if (
            policy is not None
            and error is not None
            and state is not JobState.CANCELLED
            and policy.retries(self.record.attempt, error.type)
        ):
            delay = policy.delay(self.record.attempt, _RNG)
            left = start_limits.total_left(self.tool, self.record, now)
            # A tool whose circuit this failure (or others) opened gets no retry: it would only
            # be refused, or add load to a tool that is failing.
            if (left is None or delay < left) and self._host.registry.refuses(
                self.tool.name
            ) is None:
                await self._retry(error, delay)
                return
        new = msgspec.structs.replace(
            self.record, state=state, result=result, error=error, finished_at=now
        )
        store = self._host.store_behind if lost is not None else None
        if store is None or lost is None:
            await commit_change(self._host, self.record, new, _FINAL_KIND[state], at=now)
            self.record = new
            self._stop(started=True)
        else:
            self._end_behind(store, new, _FINAL_KIND[state], now, lost)

    def _end_behind(
        self, store: WriteBehind, new: JobRecord, kind: str, at: datetime, lost: Lost
    ) -> None:
        """Queue the terminal change; it takes effect (record, event, waiters) once committed."""
        check_transition(self.record.state, new.state)
        bus = self._host.bus
        event = bus.event(new, kind, at=at)
        self._ending = True
        try:
            store.transition_soon(new, event, partial(self._end_committed, new, event, lost))
        except BaseException:
            self._ending = False
            bus.abandon(event)
            raise

    def _end_committed(
        self, new: JobRecord, event: JobEvent, lost: Lost, error: StoreError | None
    ) -> None:
        """The terminal change queued by ``_end_behind`` is committed (None) or lost."""
        bus = self._host.bus
        if error is None:
            self.record = new
            bus.deliver(event)
            self._stop(started=True)
            return
        bus.abandon(event)
        self._ending = False
        lost(error)

    async def _retry(self, error: ErrorInfo, delay: float) -> None:
        record = self.record
        again = next_attempt(record, error, delay=delay)
        message = f"attempt {record.attempt} failed ({error.type}); retrying in {delay:.3g}s"
        # On a cluster the retry may end up in the shared queue (its node stops and hands it
        # back): noted there, it still ends on time if no node can start it.
        start_by = None
        if self._host.shared is not None:
            start_by = start_limits.start_deadline(self.tool, again, datetime.now(UTC))
        await self._change("retrying", again, message=message, start_by=start_by)
        if self._ctx is not None:
            # What the attempt's threads report from now on is dropped; a report queued before
            # is handled ahead of the next attempt's start (in order) and finds the job queued.
            self._ctx.end()
        self._scope = self._ctx = None
        self._host.job_retrying(self, delay)

    async def _end_unstarted(self, kind: OutcomeType, message: str) -> None:
        now = datetime.now(UTC)
        new = msgspec.structs.replace(
            self.record, state=JobState.CANCELLED, error=self.error(kind, message), finished_at=now
        )
        await self._change("cancelled", new, at=now)
        self._stop(started=False)

    def start_left(self, now: datetime) -> float:
        """Seconds left for the current attempt to start (see ``start_limits.start_left``)."""
        return start_limits.start_left(self.tool, self.record, now)

    def _unstarted_message(self, now: datetime | None = None) -> str:
        """Why the job, still queued, ran out of time."""
        return start_limits.unstarted_message(
            self.tool, self.record, datetime.now(UTC) if now is None else now
        )

    async def _on_cancel(self, reason: str) -> JobRecord | None:
        record = self.record
        if record.state is JobState.RUNNING:
            if self._ctx is not None:
                self._ctx.request_cancel()
            if self._scope is not None:
                self._scope.cancel()
            return None
        error = self.error(OutcomeType.CANCELLED, queued_cancel_reason(record, reason))
        now = datetime.now(UTC)
        new = msgspec.structs.replace(
            record, state=JobState.CANCELLED, error=error, finished_at=now
        )
        await self._change("cancelled", new, at=now)
        self._stop(started=False)
        return new

    async def _on_progress(self, fraction: float, message: str | None) -> None:
        if self.record.state is JobState.RUNNING and not self._ending:
            new = msgspec.structs.replace(self.record, progress=fraction)
            await self._change("progress", new, message=message)

    async def _change(
        self,
        kind: str,
        new: JobRecord,
        *,
        message: str | None = None,
        at: datetime | None = None,
        cap: int | None = None,
        start_by: datetime | None = None,
    ) -> None:
        await commit_change(
            self._host, self.record, new, kind, message=message, at=at, cap=cap, start_by=start_by
        )
        self.record = new

    def _stop(self, *, started: bool) -> None:
        self._mailbox.stop(f"job {self.record.state}")
        self._args = self._scope = self._ctx = None
        if self._done is not None:
            self._done.set()
        self._host.job_finished(self, started=started)

    def _drop(self) -> None:
        """Let go of a job superseded on another node; a call still running is cancelled."""
        self._mailbox.stop("superseded on another node")
        if self._ctx is not None:
            self._ctx.request_cancel()
        if self._scope is not None:
            self._scope.cancel()
        self._args = self._scope = self._ctx = None
        if self._done is not None:
            self._done.set()
        self._host.job_dropped(self, started=self.record.state is JobState.RUNNING)


def queued_cancel_reason(record: JobRecord, reason: str) -> str:
    """``reason`` for cancelling the queued ``record``; a caller's cancel of a job waiting for
    a retry says so, since an attempt did start."""
    if reason == CANCEL_REASON and record.attempt > 1:
        return f"cancelled while waiting for attempt {record.attempt}"
    return reason


def next_attempt(
    record: JobRecord, error: ErrorInfo | None = None, *, delay: float = 0.0
) -> JobRecord:
    """``record`` queued again as its next attempt, due to start after ``delay`` seconds
    (``error``: why the last one ended)."""
    return msgspec.structs.replace(
        record,
        state=JobState.QUEUED,
        attempt=record.attempt + 1,
        started_at=None,
        progress=None,
        error=error,
        retry_at=datetime.now(UTC) + timedelta(seconds=delay),
    )


async def commit_change(
    host: JobHost,
    old: JobRecord,
    new: JobRecord,
    kind: str,
    *,
    message: str | None = None,
    at: datetime | None = None,
    cap: int | None = None,
    dead_letter: int | None = None,
    start_by: datetime | None = None,
) -> None:
    """Check, store, then publish one change of a job's record (``at``: its timestamp).

    On a cluster node the write is a compare-and-set (``Superseded`` when the stored job moved
    on; ``AtCap`` when it would start beyond ``cap`` running on the cluster), and the event reaches
    subscribers through the followed log instead; ``dead_letter`` (deliveries, cluster only) notes
    the job given up on in the same write, and ``start_by`` (cluster only) when a job queued again
    runs out of time to start, for every node's sweep of the queue.
    """
    if new.state is not old.state:
        check_transition(old.state, new.state)
    bus = host.bus
    event = bus.event(new, kind, message=message, at=at)
    shared = host.shared
    if shared is not None:
        verdict = await shared.change(
            old, new, event, cap=cap, dead_letter=dead_letter, start_by=start_by
        )
        if verdict is Verdict.STALE:
            raise Superseded(f"job {new.id} moved on without this node")
        if verdict is Verdict.BUSY:
            raise AtCap(f"{new.tool} is at its concurrency cap on the cluster")
        return
    try:
        await host.store.transition(new, event)
    except BaseException:
        bus.abandon(event)
        raise
    bus.deliver(event)


_RNG = random.Random()
