"""The supervisor: admits jobs, runs them on a pool of ToolRunners, restarts crashed runners, and
shuts down without leaving a task behind."""

from __future__ import annotations

import gc
import math
import numbers
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio
import msgspec
import structlog
from anyio.abc import TaskGroup

from jobwarden.actors import start_limits
from jobwarden.actors.cluster import ClusterNode
from jobwarden.actors.deadlines import Deadlines
from jobwarden.actors.event_bus import DEFAULT_SUBSCRIBER_BUFFER, EventBus
from jobwarden.actors.job_actor import JobActor
from jobwarden.actors.loop_calls import checkpoint, current_time, new_event
from jobwarden.actors.plugin_hooks import start_plugin, stop_plugin
from jobwarden.actors.process_pool import ProcessPool
from jobwarden.actors.recovery import Recovered, recover
from jobwarden.actors.restarts import RestartIntensity
from jobwarden.actors.retention import Retainer, Retention
from jobwarden.actors.scheduler import Scheduler
from jobwarden.actors.states import QUEUED, JobState
from jobwarden.actors.subscription import Subscription
from jobwarden.actors.thread_calls import ThreadCalls
from jobwarden.actors.to_the_end import to_the_end
from jobwarden.actors.tool_runner import SHUTDOWN_REASON, ToolRunner
from jobwarden.errors import (
    NESTED_TOO_DEEP,
    ErrorInfo,
    InvalidInput,
    InvalidRequest,
    JobFailed,
    JobFinished,
    JobNotFinished,
    JobNotFound,
    OutcomeType,
    Overloaded,
    ShuttingDown,
    StoreError,
    StoreUnavailable,
    SupervisorCrashed,
)
from jobwarden.ids import new_job_id
from jobwarden.plugins.registry import PluginLifecycle, PluginRegistry
from jobwarden.plugins.tool import Plugin, Tool
from jobwarden.records import UNSTORABLE, JobEvent, JobRecord, unstorable_part
from jobwarden.store.base import (
    FailsForGood,
    JobPage,
    JobQuery,
    JobStore,
    fails_for_good,
    write_behind,
)
from jobwarden.store.memory import MemoryStore
from jobwarden.store.shared import SharedStore

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from jobwarden.tracing import JobTracing

log = structlog.get_logger("jobwarden.supervisor")
# A record keeps bytes in its input as bytes: every JSON encoder of ours writes them as base64
# anyway, and encoding a large payload eagerly costs ~3 ms per MiB on the submit path.
_RAW = (bytes, bytearray)

DEFAULT_RETENTION = Retention()
QUEUED_AT_SHUTDOWN = "the supervisor shut down before the job started"
COLLECT_AFTER_RUNNERS = 1_000
_E = TypeVar("_E", bound=BaseException)


class SupervisorStatistics(msgspec.Struct, frozen=True):
    """A snapshot of the supervisor's load."""

    queued: int
    running: int
    runners: int
    subscribers: int
    restarts: int
    accepting: bool


class Supervisor:
    """Runs tool calls as supervised jobs. Use as ``async with Supervisor(plugins=[...]) as sup``.

    ``concurrency`` ToolRunners run jobs (the global cap); a tool's ``max_concurrency`` caps it
    further. Thread-mode tools run on ``thread_concurrency`` threads, and fail fast once
    ``max_abandoned_threads`` of a tool's abandoned threads still run; process-mode tools run in
    a pool of ``process_workers`` worker processes (``processes``), started when first needed.
    At most ``max_queued`` jobs wait; beyond that ``submit`` raises ``Overloaded``. On exit
    it stops admitting, gives running jobs ``shutdown_grace_s`` to finish, then cancels them. A
    runner that crashes is replaced; more than ``max_restarts`` crashes within
    ``restart_window_s`` stop the supervisor with ``SupervisorCrashed``, and so does a store
    that refuses a job's write (its outcome could not be recorded) or fails for good
    (``FailsForGood``: a SQLite store's writer process ended), busy or idle. A
    ``KeyboardInterrupt`` (or ``SystemExit``) that stops it from one of its tasks (a Ctrl-C
    landing in plugin code) comes out of ``async with`` as itself, caused by the task group's
    exception group. With a durable store, the jobs it holds unfinished are recovered at start
    (``recovered`` says how).
    ``retention`` purges finished jobs in the background (None: never). Given an OpenTelemetry
    ``tracer``, each job is traced (see ``jobwarden.tracing``).

    A store shared by several nodes (one with a ``shared`` side, like the Redis store) makes this
    supervisor one node of a cluster (see ``jobwarden.actors.cluster``): jobs submitted here go to
    the shared queue and run on whichever node takes them, ``max_queued`` bounds that queue, and
    ``get``, ``wait``, ``cancel`` and ``subscribe`` work for every job of the cluster.
    """

    def __init__(
        self,
        plugins: Iterable[Plugin] = (),
        *,
        registry: PluginRegistry | None = None,
        store: JobStore | None = None,
        concurrency: int = 64,
        thread_concurrency: int = 32,
        max_abandoned_threads: int = 8,
        process_workers: int = 2,
        max_queued: int = 100_000,
        subscriber_buffer: int = DEFAULT_SUBSCRIBER_BUFFER,
        shutdown_grace_s: float = 10.0,
        max_restarts: int = 5,
        restart_window_s: float = 10.0,
        source: str | None = None,
        retention: Retention | None = DEFAULT_RETENTION,
        tracer: Tracer | None = None,
    ) -> None:
        if min(concurrency, thread_concurrency, max_abandoned_threads, process_workers) < 1:
            raise ValueError(
                "concurrency, thread_concurrency, max_abandoned_threads and process_workers"
                " must be >= 1"
            )
        if max_queued < 1:
            raise ValueError("max_queued must be >= 1")
        if not shutdown_grace_s >= 0:  # NaN too: a NaN deadline breaks the stop, late
            raise ValueError(f"shutdown_grace_s must be a number >= 0, not {shutdown_grace_s!r}")
        self.registry = registry if registry is not None else PluginRegistry()
        for plugin in plugins:
            self.registry.add(plugin)
        self.store: JobStore = store if store is not None else MemoryStore()
        shared: SharedStore | None = getattr(self.store, "shared", None)
        self.shared = shared
        if source is None:
            source = f"jobwarden://{shared.node if shared else socket.gethostname()}"
        self.bus = EventBus(self.store, source=source, subscriber_buffer=subscriber_buffer)
        self._cluster = (
            ClusterNode(self, shared, window=concurrency) if shared is not None else None
        )
        self._concurrency = concurrency
        self.store_behind = write_behind(self.store)
        self._thread_concurrency = thread_concurrency
        self._max_abandoned = max_abandoned_threads
        self.processes = ProcessPool(process_workers)
        self._max_queued = max_queued
        # An int too large for a float (a grace of 10**400) is no limit, as infinity is.
        self._grace = _float(shutdown_grace_s)
        self._restarts = RestartIntensity(max_restarts, restart_window_s)
        self._scheduler = Scheduler(concurrency)
        self._deadlines = Deadlines()
        self._expired: deque[JobActor] = deque()
        self._expired_wakeup = anyio.Event()
        self.retainer = Retainer(self.store, retention) if retention is not None else None
        self._actors: dict[str, JobActor] = {}
        self._queued = 0
        # Submits past the max_queued check whose put has not returned: a durable put yields,
        # and without these counted every submit awaiting its commit would pass the check.
        self._submitting = 0
        # Keyed submits whose put has not returned, by job id; the event (made only when a
        # duplicate waits) is set once that submit has queued its job or given up.
        self._keyed: dict[str, anyio.Event | None] = {}
        self._running = 0
        self._idle: anyio.Event | None = None
        self._tg: TaskGroup | None = None
        self._accepting = False
        self._phase = "new"
        # The store refused an outcome: the stop is a crash's, whatever is running is left as
        # the file has it, for the next start to recover.
        self._store_failed = False
        self.recovered = Recovered()
        self._tracing: JobTracing | None = None
        if tracer is not None:
            # Imported only here: with tracing off, opentelemetry is never loaded.
            from jobwarden.tracing import JobTracing

            self._tracing = JobTracing(tracer)

    async def __aenter__(self) -> Self:
        if self._phase != "new":
            raise RuntimeError("a Supervisor can be started only once")
        self._phase = "starting"
        await self.store.open()
        try:
            await self._start()
        except BaseException:
            # Undo what did start (runners, plugins, the store's connections and its file lock):
            # a failed start leaves nothing running and the store free for another try.
            await self._unstart()
            raise
        self._accepting = True
        self._phase = "running"
        return self

    async def _start(self) -> None:
        """Everything of the start after the store opened: runners, plugins, recovery."""
        await self.bus.start()
        threads = ThreadCalls(
            self.registry, anyio.CapacityLimiter(self._thread_concurrency), self._max_abandoned
        )
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self._deadlines.run)
        tg.start_soon(self._expire_queued)
        for _ in range(self._concurrency):
            tg.start_soon(self._runner_slot, threads)
        # Ready means every runner waits for work: the first jobs do not pay for their start-up.
        await self._scheduler.wait_runners_parked(self._concurrency)
        if self._concurrency >= COLLECT_AFTER_RUNNERS:
            # Thousands of runners live as long as the supervisor. One full collection now counts
            # them as long-lived, so the cyclic gc's next full pass (which walks them all) waits
            # for a quarter as many new objects again instead of landing in the first burst of
            # work. With few runners it would only cost the host a collection for nothing.
            gc.collect()
        registry = self.registry
        registry.started()
        for plugin in registry.plugins():
            await start_plugin(registry, plugin)
        for plugin in registry.plugins():
            if registry.status(plugin.name).state is PluginLifecycle.INITIALIZED:
                registry.set_lifecycle(plugin.name, PluginLifecycle.RUNNING)
        if self._cluster is not None:
            # Jobs left by a node that died come back through the queue's leases, not recovery.
            tg.start_soon(self._cluster.run, (await self.store.event_bounds()).last)
        elif self.store.durable:
            self.recovered = await recover(
                self, self.registry, await self.store.unfinished(), self.admit
            )
        if self.retainer is not None:
            tg.start_soon(self.retainer.run)
        failing = fails_for_good(self.store)
        if failing is not None:
            # Last: a failure during recovery fails the start itself, as a StoreError.
            tg.start_soon(self._watch_store, failing)

    async def _unstart(self) -> None:
        """After a failed start: stop the tasks it began, then close as a stop does."""
        tg = self._tg
        try:
            if tg is not None:
                tg.cancel_scope.cancel()
                try:
                    await tg.__aexit__(None, None, None)
                except Exception:
                    # The start's own error is the one raised; a task's failure is only logged.
                    log.exception("a supervisor task failed while a failed start was undone")
        finally:
            await to_the_end(self._close)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._accepting = False
        self._phase = "stopping"
        self._scheduler.close()
        try:
            if exc is None and (self._running or self._scheduler.pending_starts):
                with anyio.move_on_after(self._grace):
                    await self._wait_idle()
            self._tg.cancel_scope.cancel()
            try:
                return await self._tg.__aexit__(exc_type, exc, tb)
            except BaseExceptionGroup as group:
                crashed = group.subgroup(SupervisorCrashed)
                if crashed is not None:
                    raise _first(crashed)  # noqa: B904 - keeps its own cause: the crash
                if exc is not None and _only(group, exc):
                    # The body's own exception, wrapped by the task group: let it through as is.
                    return False
                interrupt = _interrupt(group, exc)
                if interrupt is not None:
                    # A Ctrl-C (or exit) that landed in a task, in plugin code on trio or raised
                    # by a tool: the host stops on it as on its own, caused by the group.
                    raise interrupt from group
                raise
        finally:
            await to_the_end(self._close)

    async def _close(self) -> None:
        """Release everything, even when the store fails meanwhile: the runner that met that
        failure first has already stopped the supervisor with it."""
        left_running = self._left_for_recovery()
        if left_running:
            # Their outcomes may be what the store refused: a cancel written now (a small write
            # that may fit) would replace a result, or a restartable job's rerun.
            running = [a.id for a in self._actors.values() if a.record.state is JobState.RUNNING]
            if running:
                log.warning(
                    "the job store failed: jobs still running are left for the next start",
                    job_ids=running,
                )
        for actor in list(self._actors.values()):
            state = actor.record.state
            try:
                if state is JobState.RUNNING and left_running:
                    continue
                if state is JobState.RUNNING:
                    # Only if its runner was cancelled before it could record the outcome.
                    error = actor.error(OutcomeType.CANCELLED, SHUTDOWN_REASON)
                    await actor.finish(JobState.CANCELLED, None, error)
                elif state is JobState.QUEUED and not self.store.durable:
                    await actor.cancel(QUEUED_AT_SHUTDOWN)
            except StoreError as exc:
                # The store keeps the job as it last recorded it; a restart recovers it from there.
                log.warning(
                    "a job's end at shutdown was not stored", job_id=actor.id, error=str(exc)
                )
        if self._cluster is not None:
            await self._cluster.hand_back()
        await self.processes.close()
        self._deadlines.close()
        for actor in self._actors.values():
            if not actor.record.state.terminal:
                # Left queued in a durable store for the next start: its waiters stop waiting.
                actor.done_event().set()
        self.bus.close()
        for plugin in self.registry.plugins():
            await stop_plugin(self.registry, plugin)
        await self.store.close()
        self._phase = "stopped"

    async def submit(
        self,
        tool: str,
        input: Any,
        *,
        timeout_s: float | None = None,
        idempotency_key: str | None = None,
        owner: str | None = None,
    ) -> JobRecord:
        """Validate and queue a call of ``tool``; returns the new record (state queued).

        With an ``idempotency_key`` the same owner already used, returns that earlier job instead.

        The record is shared, read-only: its ``input`` (a copy of the caller's, taken at
        submit), ``result`` and ``error.details`` may be the very dicts the store keeps and
        events carry. Do not mutate them; copy first (``copy.deepcopy``, ``msgspec.to_builtins``).
        """
        if not self._accepting:
            raise ShuttingDown(self._not_accepting_reason(), tool=tool)
        tracing = self._tracing
        began = time.time_ns() if tracing is not None else 0
        spec = self.registry.available_tool(tool)
        args = spec.validate_input(input)
        if timeout_s is not None:
            if (
                not isinstance(timeout_s, int | float)
                or isinstance(timeout_s, bool)
                or not 0 < _float(timeout_s) < math.inf
            ):
                raise InvalidRequest("timeout_s must be a positive number of seconds", tool=tool)
            # A float of another type (numpy's float64) is one no store could encode.
            timeout_s = float(timeout_s)
        shared = self.shared
        if shared is None and self._queued + self._submitting >= self._max_queued:
            raise Overloaded(
                f"{self._queued + self._submitting} jobs are queued already", tool=tool
            )
        try:
            # A copy of the caller's input, not a reference: a caller changing its dict after
            # the submit would change the record (and what a write-behind store saves later)
            # while the tool runs with what was validated. One C call, about 0.3 us for a small
            # input.
            kept = msgspec.to_builtins(input, builtin_types=_RAW)
        except UNSTORABLE as exc:
            raise InvalidInput(
                f"the job's input {_why(exc)}: it cannot be stored",
                plugin=spec.plugin,
                tool=spec.name,
            ) from exc
        record = JobRecord(
            id=new_job_id(),
            tool=spec.name,
            plugin=spec.plugin,
            state=QUEUED,
            input=kept,
            created_at=datetime.now(UTC),
            owner=owner,
            idempotency_key=idempotency_key,
            timeout_s=timeout_s,
        )
        refusal = self.registry.admit(spec.name, record.id)
        if refusal is not None:
            record = _circuit_open(record, refusal)
        bus = self.bus
        # The kind spelled out: an Enum member's ``value`` is a Python-level property on 3.11.
        event = bus.event(record, "queued" if refusal is None else "failed", at=record.created_at)
        if shared is not None:
            start_by = start_limits.start_deadline(spec, record, record.created_at)
            return await self._enqueue(
                shared, record, event, refused=refusal is not None, start_by=start_by
            )
        behind = self.store_behind
        stored_behind: _Stored | None = None
        self._submitting += 1
        keyed = idempotency_key is not None
        if keyed:
            self._keyed[record.id] = None
        try:
            if behind is not None:
                # put_then, so that a caller cancelled while the job commits still knows
                # whether it was stored (then it is run, below, not left unrun in the file).
                stored_behind = _Stored()
                earlier = await behind.put_then(record, event, stored_behind)
                stored = record if earlier is None else earlier
            else:
                stored = await self.store.put(record, event)
        except StoreError as exc:
            bus.abandon(event)
            self.registry.release(spec.name, record.id)
            raise StoreUnavailable(f"the job was not accepted: {exc}", tool=tool) from exc
        except BaseException as exc:
            refusal_of_input = _unstorable(record, exc)
            if refusal_of_input is not None:
                bus.abandon(event)
                self.registry.release(spec.name, record.id)
                raise refusal_of_input from exc
            if stored_behind is not None and stored_behind.done:
                self._accept(record, event, spec, args, began)
            else:
                bus.abandon(event)
                self.registry.release(spec.name, record.id)
            raise
        finally:
            # Released in the same step as ``_accept`` counts the job queued (no yield between).
            self._submitting -= 1
            if keyed:
                waiting = self._keyed.pop(record.id)
                if waiting is not None:
                    waiting.set()
        if stored is not record:
            bus.abandon(event)
            # The earlier job is the answer and this one never runs: were it the circuit's
            # half-open trial, no outcome would ever decide it.
            self.registry.release(spec.name, record.id)
            if stored.id in self._keyed:
                # One commit can store the job and answer its duplicate, and the loop may resume
                # the duplicate's caller first: it waits until the job can be waited on or
                # cancelled here.
                await self._until_accepted(stored.id)
            return stored
        self._accept(record, event, spec, args, began)
        return record

    async def _until_accepted(self, job_id: str) -> None:
        waiting = self._keyed[job_id]
        if waiting is None:
            waiting = self._keyed[job_id] = new_event()
        await waiting.wait()

    def _accept(
        self, record: JobRecord, event: JobEvent, spec: Tool, args: Any, began: int
    ) -> None:
        """A submitted job is stored: publish its first event and queue it, unless the circuit
        breaker refused it (stored already failed)."""
        if self._tracing is not None:
            self._tracing.submitted(record, began)
        if record.state is not QUEUED:
            self.bus.deliver(event)
            self.registry.job_ended(record)
            return
        # The runner is woken before the subscribers: it then gets the loop first, and a short
        # job's later events reach each subscriber in the same wake-up as its queued event.
        self._admit(JobActor(self, record, spec, args))
        self.bus.deliver(event)

    async def _enqueue(
        self,
        shared: SharedStore,
        record: JobRecord,
        event: JobEvent,
        *,
        refused: bool,
        start_by: datetime | None,
    ) -> JobRecord:
        """A cluster node's submit: into the shared queue, for whichever node takes it (and,
        with ``start_by``, to end when that comes if no node started it by then)."""
        try:
            stored = await shared.enqueue(
                record, event, max_queued=self._max_queued, start_by=start_by
            )
        except Overloaded:
            self.registry.release(record.tool, record.id)
            raise
        except StoreError as exc:
            self.registry.release(record.tool, record.id)
            raise StoreUnavailable(f"the job was not accepted: {exc}", tool=record.tool) from exc
        except UNSTORABLE as exc:
            self.registry.release(record.tool, record.id)
            refusal_of_input = _unstorable(record, exc)
            if refusal_of_input is None:
                raise
            raise refusal_of_input from exc
        if stored is not record:
            self.registry.release(record.tool, record.id)
        elif refused:
            self.registry.job_ended(record)
        elif start_by is not None and self._cluster is not None:
            self._cluster.queued_until(start_by)
        return stored

    def admit(self, actor: JobActor) -> None:
        """Queue a job actor taken over from elsewhere: what a cluster node's puller took from
        the shared queue, or recovery found in the store. A retry still in its backoff (its node
        handed it back as it stopped, or the last process stopped) waits for the rest of it,
        until its ``retry_at``, as it would have where it was."""
        record = actor.record
        self._actors[record.id] = actor
        self._queued += 1
        due = record.retry_at if record.attempt > 1 else None
        delay = 0.0 if due is None else (due - datetime.now(UTC)).total_seconds()
        self._schedule_after(actor, delay)

    def reschedule(self, actor: JobActor) -> None:
        """Make a job that could not start runnable again (its tool's cap had room again)."""
        if not actor.record.state.terminal:
            self._scheduler.admit(actor)

    def local_actor(self, job_id: str) -> JobActor | None:
        """The actor of a job this node holds, if it holds it."""
        return self._actors.get(job_id)

    def _admit(self, actor: JobActor) -> None:
        self._actors[actor.record.id] = actor
        self._queued += 1
        self._schedule(actor)

    def _schedule_after(self, actor: JobActor, delay: float) -> None:
        """``_schedule`` the job once ``delay`` seconds have passed (at once if none)."""
        if delay <= 0:
            self._schedule(actor)
        else:
            self._deadlines.later(anyio.current_time() + delay, lambda: self._schedule(actor))

    def _schedule(self, actor: JobActor) -> None:
        """Make a queued job runnable, with its queue timeout and its total timeout (if its tool
        has either) running, to end it if it is still queued when the earlier one comes; a job
        whose limit passed already (while it waited in a cluster's queue, or across a restart)
        ends at once instead."""
        tool = actor.tool
        if tool.queue_timeout_s is not None or tool.total_timeout_s is not None:
            left = actor.start_left(datetime.now(UTC))
            if left <= 0:
                self._queue_timed_out(actor)
                return
            actor.queue_deadline = anyio.current_time() + left
            actor.queue_alarm = self._deadlines.later(
                actor.queue_deadline, lambda: self._queue_timed_out(actor)
            )
        self._scheduler.admit(actor)

    def _queue_timed_out(self, actor: JobActor) -> None:
        self._expired.append(actor)
        self._expired_wakeup.set()

    async def _expire_queued(self) -> None:
        """End jobs whose queue timeout came while they still waited (the watchdog's callbacks
        cannot do it themselves: ending a job writes to the store)."""
        while True:
            await self._expired_wakeup.wait()
            self._expired_wakeup = anyio.Event()
            while self._expired:
                await self._expired.popleft().expire()

    async def get(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        """The job's current record, or ``JobNotFound`` (also for another owner's job).

        ``ShuttingDown`` before the supervisor has started, as ``submit`` (so ``wait``,
        ``cancel`` and ``list_jobs`` too). A shared, read-only view, as ``submit``'s record: copy
        it before mutating what it holds.
        """
        # On a cluster node the store is the truth: another node may have moved a job held here.
        actor = self._actors.get(job_id) if self._cluster is None else None
        if actor is not None:
            record: JobRecord | None = actor.record
        else:
            if self._phase == "new":
                # Checked only here, off the path of a job it holds: none before the start.
                raise self._not_started(job_id)
            try:
                record = await self.store.get(job_id)
            except StoreError as exc:
                raise StoreUnavailable(f"the job could not be read: {exc}", job_id=job_id) from exc
        if record is None or (owner is not None and record.owner != owner):
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
        return record

    async def wait(
        self, job_id: str, timeout: float | None = None, *, owner: str | None = None
    ) -> JobRecord:
        """Wait until the job is terminal and return its record; ``TimeoutError`` on timeout.

        ``InvalidRequest`` for a timeout that is no number of seconds (NaN: as a deadline it would
        stop the supervisor's timers). An infinite timeout waits with no limit, and so does one
        too large for a float (``10**400``). The record is a shared, read-only view, as
        ``submit``'s: copy it before mutating what it holds.
        """
        if timeout is not None:
            timeout = _wait_timeout(timeout)
        if self._cluster is not None:
            if self._phase == "new":
                raise self._not_started(job_id)
            with anyio.fail_after(timeout):
                return await self._cluster.wait(job_id, owner)
        actor = self._actors.get(job_id)
        if actor is None:
            record = await self.get(job_id, owner=owner)
            if record.state.terminal:
                return record
            raise JobNotFinished(f"job {job_id} is not run by this supervisor", job_id=job_id)
        if owner is not None and actor.record.owner != owner:
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
        if actor.record.state.terminal:
            return actor.record
        if timeout is None:
            return await self._wait_done(actor)
        if timeout > 0:
            # A short job often ends as soon as its runner gets the loop (the runner was woken
            # first, when the job was admitted): one yield then spares the alarm and the wake-up.
            await checkpoint()
            if actor.record.state.terminal:
                return actor.record
        # An alarm in the deadline heap rather than a cancel scope with a loop timer, which would
        # cost more than the rest of the wait for a short job (POST /v1/jobs?wait= waits on each).
        now = current_time()
        deadline = now + timeout
        while True:
            if now >= deadline:
                raise TimeoutError
            if self._deadlines.closed:
                raise _left_behind(actor)
            done = actor.done_event()
            alarm = self._deadlines.alarm(deadline, done)
            try:
                await done.wait()
            finally:
                self._deadlines.done(alarm)
            if actor.record.state.terminal:
                return actor.record
            now = current_time()

    async def _wait_done(self, actor: JobActor) -> JobRecord:
        while not actor.record.state.terminal:
            if self._deadlines.closed:
                raise _left_behind(actor)
            await actor.done_event().wait()
        return actor.record

    async def run(self, tool: str, input: Any, *, timeout: float | None = None, **kw: Any) -> Any:
        """Submit, wait, and return the result; raises ``JobFailed`` unless the job succeeded.

        ``timeout`` is the wait's (see ``wait``), checked before anything is submitted. The
        result is the job's record's own (shared, read-only): copy it before mutating it.
        """
        if timeout is not None:
            timeout = _wait_timeout(timeout)
        record = await self.submit(tool, input, **kw)
        done = await self.wait(record.id, timeout)
        if done.state is not JobState.SUCCEEDED:
            raise JobFailed(done)
        return done.result

    async def cancel(self, job_id: str, *, owner: str | None = None) -> JobRecord:
        """Cancel a queued or running job and return it in state cancelled.

        Raises ``JobFinished`` if it was already terminal, or finished before the cancel landed.
        """
        if self._cluster is not None:
            return await self._cluster.cancel(job_id, owner)
        record = await self.get(job_id, owner=owner)
        actor = self._actors.get(job_id)
        if actor is None:
            raise JobFinished(f"job {job_id} is already {record.state}", job_id=job_id)
        cancelled = await actor.cancel_requested()
        if cancelled is not None:
            return cancelled
        final = await actor.wait_done()
        if final.state is not JobState.CANCELLED:
            raise JobFinished(f"job {job_id} finished {final.state} first", job_id=job_id)
        return final

    async def list_jobs(self, query: JobQuery | None = None) -> JobPage:
        """Jobs newest first, filtered by the query; ``ShuttingDown`` before the start."""
        if self._phase == "new":
            # Whatever the store: a SQLite store not yet open says only that it is closed.
            raise self._not_started(None)
        try:
            return await self.store.list_jobs(query or JobQuery())
        except StoreError as exc:
            raise StoreUnavailable(f"the jobs could not be listed: {exc}") from exc

    @asynccontextmanager
    async def subscribe(
        self,
        *,
        job_id: str | None = None,
        tool: str | None = None,
        since: int | None = None,
        owner: str | None = None,
        state: JobState | str | None = None,
        buffer: int | None = None,
    ) -> AsyncIterator[Subscription]:
        """Events after offset ``since``, then live ones.

        For one job, ``since`` defaults to 0 (its whole retained history) and the iteration ends
        after its terminal event; otherwise the default is "from now on". With ``owner``, only
        that owner's jobs are visible; with ``state`` (a ``JobState`` or its value, as
        ``"succeeded"``), only events entering that state.
        ``buffer`` overrides the supervisor's subscriber_buffer.

        ``InvalidRequest`` for a ``since`` that is not an offset (an int >= 0), a ``buffer`` that
        is not an int >= 1, or a ``state`` that is none. ``ShuttingDown`` before the supervisor
        has started, as ``submit`` (no event would ever come). Once it has stopped, a
        subscription replays what the store holds, then ends (``StoreUnavailable`` from a store
        closed with it, as the SQLite store is).

        Each event is shared with every other subscriber and the store (no copy per subscriber):
        read-only, as ``submit``'s record; copy ``event.data.result`` before mutating it.
        """
        if self._phase == "new":
            # Whatever the store: an unopened one would wait forever for an event, or fail to
            # read one with an error that does not say why.
            raise ShuttingDown(self._not_accepting_reason(), tool=tool, job_id=job_id)
        if since is not None and not _is_count(since, 0):
            raise InvalidRequest(f"since must be an event offset (an int >= 0), not {since!r}")
        if buffer is not None and not _is_count(buffer, 1):
            raise InvalidRequest(f"buffer must be an int >= 1, not {buffer!r}")
        if state is not None:
            if not isinstance(state, str) or state not in _STATES:
                raise InvalidRequest(f"state must be a JobState, not {state!r}")
            # The member, not its value as a str: a job's stream tells events apart by identity.
            state = JobState(state)
        ends = False
        if job_id is not None:
            record = await self.get(job_id, owner=owner)
            ends = record.state.terminal
            since = 0 if since is None else since
        if tool is not None:
            self.registry.tool(tool)
        async with self.bus.subscribe(
            job_id=job_id,
            tool=tool,
            since=since,
            owner=owner,
            state=state,
            buffer=buffer,
            ends_after_replay=ends,
        ) as subscription:
            yield subscription

    def statistics(self) -> SupervisorStatistics:
        """Queue depth, running jobs, runners, subscribers and restarts right now."""
        return SupervisorStatistics(
            queued=self._queued,
            running=self._running,
            runners=self._concurrency,
            subscribers=self.bus.subscriber_count,
            restarts=self._restarts.total,
            accepting=self._accepting,
        )

    def job_started(self, actor: JobActor) -> None:
        """Called by a job actor entering running."""
        self._queued -= 1
        self._running += 1
        if actor.queue_alarm is not None:  # (most tools have no queue timeout: no call then)
            self._disarm_queue_timeout(actor)
        self.registry.job_started(actor.record)
        if self._tracing is not None:
            self._tracing.started(actor.record)

    def job_retrying(self, actor: JobActor, delay: float) -> None:
        """Called by a job actor queued again after a failed attempt: admit it after ``delay``."""
        self._running -= 1
        self._queued += 1
        if self._running == 0 and self._idle is not None:
            self._idle.set()
        if self._tracing is not None:
            self._tracing.retrying(actor.record)
        self._schedule_after(actor, delay)

    def _disarm_queue_timeout(self, actor: JobActor) -> None:
        if actor.queue_alarm is None:
            return  # the common case: the tool has no queue timeout
        self._deadlines.done(actor.queue_alarm)
        actor.queue_alarm = None
        actor.queue_deadline = math.inf

    def job_finished(self, actor: JobActor, *, started: bool) -> None:
        """Called by a job actor entering a terminal state."""
        del self._actors[actor.record.id]
        if actor.queue_alarm is not None:
            self._disarm_queue_timeout(actor)
        self.registry.job_ended(actor.record)
        if self._tracing is not None:
            self._tracing.finished(actor.record)
        self._forget(actor, started=started)

    def job_dropped(self, actor: JobActor, *, started: bool) -> None:
        """Called by a job actor superseded on another node: no outcome is counted here."""
        del self._actors[actor.id]
        self._disarm_queue_timeout(actor)
        self._forget(actor, started=started)

    def _forget(self, actor: JobActor, *, started: bool) -> None:
        if started:
            self._running -= 1
            if self._running == 0 and self._idle is not None:
                self._idle.set()
        else:
            self._queued -= 1
        if self._cluster is not None:
            self._cluster.job_ended(actor.id)

    def job_at_cap(self, actor: JobActor, generation: int) -> None:
        """Called by a job actor whose tool was at its cap on the cluster when it tried to start."""
        assert self._cluster is not None
        self._cluster.park(actor, generation)

    def cap_generation(self, tool: str) -> int:
        """How often a slot of ``tool`` was seen freed on the cluster (0 on a single node)."""
        return 0 if self._cluster is None else self._cluster.generation(tool)

    async def _wait_idle(self) -> None:
        # A job started ahead counts once its running change is committed; until then it is
        # one of the scheduler's pending starts, which the grace covers too.
        while self._running or self._scheduler.pending_starts:
            self._idle = anyio.Event()
            await self._idle.wait()
        self._idle = None

    async def _runner_slot(self, threads: ThreadCalls) -> None:
        while True:
            runner = ToolRunner(
                self.registry,
                self._scheduler,
                self._deadlines,
                threads,
                self.processes,
                write_behind=self.store_behind is not None,
                tracing=self._tracing,
                left_for_recovery=self._left_for_recovery,
            )
            try:
                await runner.serve()
            except StoreError as exc:
                # The store no longer takes writes: no runner can record an outcome, so stop
                # with the reason now rather than restart into the same failure.
                self._store_failed = True
                raise SupervisorCrashed(f"the job store failed: {exc}") from exc
            except Exception as exc:
                log.exception("tool runner crashed; restarting it")
                with anyio.CancelScope(shield=True):
                    await self._recover(runner.current)
                self._restarts.record(exc)
            else:
                return

    async def _watch_store(self, store: FailsForGood) -> None:
        """Stop the supervisor once its store has failed for good, as a runner meeting that
        failure would: idle, no runner would meet it, and every submit would be refused (503)
        while the process went on as if healthy."""
        exc = await store.wait_failed()
        self._store_failed = True
        raise SupervisorCrashed(f"the job store failed: {exc}") from exc

    def _left_for_recovery(self) -> bool:
        """Whether jobs cut off by this stop are left as the store has them: it is a failed
        store's stop, and the store keeps them for the next start to recover."""
        return self._store_failed and self.store.durable

    async def _recover(self, actor: JobActor | None) -> None:
        """After a runner crash: requeue a job it had not started, fail one it was running."""
        if actor is None or actor.record.state.terminal:
            return
        if actor.record.state is JobState.QUEUED:
            self._scheduler.admit(actor)
            return
        try:
            await actor.fail_crashed()
        except Exception:
            log.exception("could not record the crashed job", job_id=actor.id)

    def _not_started(self, job_id: str | None) -> ShuttingDown:
        """The refusal of a call made before the supervisor has started."""
        return ShuttingDown(self._not_accepting_reason(), job_id=job_id)

    def _not_accepting_reason(self) -> str:
        if self._phase == "new":
            return "the supervisor is not started: use `async with Supervisor(...)`"
        return "the supervisor is shutting down"


def _unstorable(record: JobRecord, exc: BaseException) -> InvalidInput | None:
    """The refusal of a job whose input, owner or key no JSON can hold, when that is why the
    store raised ``exc``; None when it is not (every part encodes: the store's own error)."""
    if not isinstance(exc, UNSTORABLE):
        return None
    part = unstorable_part(record)
    if part is None:
        return None
    return InvalidInput(
        f"the job's {part} {_why(exc)}: it cannot be stored",
        plugin=record.plugin,
        tool=record.tool,
    )


def _why(exc: BaseException) -> str:
    """Why no JSON can hold a value whose encoding raised ``exc`` (one of ``UNSTORABLE``)."""
    if isinstance(exc, UnicodeEncodeError):
        return (
            "holds a string that is not valid Unicode (a lone surrogate, as bytes decoded with"
            " surrogateescape give)"
        )
    if isinstance(exc, RecursionError):
        return f"is {NESTED_TOO_DEEP}"
    return f"holds a value no JSON can hold ({exc})"


def _circuit_open(record: JobRecord, reason: str) -> JobRecord:
    """The job created already failed with ``circuit_open``: it never queues or runs, so no
    transition happens and its one event is ``jobwarden.job.failed``."""
    error = ErrorInfo(
        type=OutcomeType.CIRCUIT_OPEN,
        message=reason,
        plugin=record.plugin,
        tool=record.tool,
        job_id=record.id,
    )
    return msgspec.structs.replace(
        record, state=JobState.FAILED, error=error, finished_at=record.created_at
    )


def _only(group: BaseExceptionGroup[BaseException], exc: BaseException) -> bool:
    return all(
        _only(inner, exc) if isinstance(inner, BaseExceptionGroup) else inner is exc
        for inner in group.exceptions
    )


def _interrupt(
    group: BaseExceptionGroup[BaseException], exc: BaseException | None
) -> BaseException | None:
    """The (first) ``KeyboardInterrupt`` or ``SystemExit`` in ``group`` when it holds nothing
    else but the body's own exception ``exc``, else None."""
    interrupts, rest = group.split((KeyboardInterrupt, SystemExit))
    if interrupts is None or (rest is not None and (exc is None or not _only(rest, exc))):
        return None
    return _first(interrupts)


def _first(group: BaseExceptionGroup[_E]) -> _E:
    exc = group.exceptions[0]
    return _first(exc) if isinstance(exc, BaseExceptionGroup) else exc


class _Stored:
    """A write-behind put's commit callback: notes that the job is stored."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def __call__(self, error: StoreError | None) -> None:
        self.done = error is None


_STATES = frozenset(JobState)


def _left_behind(actor: JobActor) -> JobNotFinished:
    """Why a wait for a job the stopped supervisor left unfinished (queued in a durable store,
    for the next start to recover) cannot end here."""
    return JobNotFinished(
        f"job {actor.id} is left {actor.record.state} for the next start: the supervisor has"
        " stopped",
        job_id=actor.id,
    )


def _not_seconds(value: object) -> bool:
    """Whether a wait's timeout is no number of seconds (a str, a bool, a Decimal, NaN)."""
    if type(value) is float:  # the usual case first: an ABC check costs ten times as much
        return math.isnan(value)
    if type(value) is int:
        return False
    return not isinstance(value, numbers.Real) or isinstance(value, bool) or math.isnan(value)


def _wait_timeout(timeout: float) -> float:
    """A wait's ``timeout`` as a float (too large for one: infinite, no limit), or
    ``InvalidRequest`` when it is no number of seconds."""
    if _not_seconds(timeout):
        raise InvalidRequest(f"timeout must be a number of seconds (or None), not {timeout!r}")
    return timeout if type(timeout) is float else _float(timeout)


def _float(seconds: float) -> float:
    """``seconds`` (an int, a Fraction, ...) as a float: infinite when too large for one."""
    try:
        return float(seconds)
    except OverflowError:
        return math.inf if seconds > 0 else -math.inf


def _is_count(value: object, least: int) -> bool:
    """``value`` is an int (not a bool) of at least ``least``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least
