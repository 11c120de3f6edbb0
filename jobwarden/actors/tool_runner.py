"""The ToolRunner: the one place in jobwarden that calls plugin code.

A pool of ToolRunners pulls job actors from the scheduler. For each job it starts the actor,
calls the tool under the job's deadline in a cancel scope, checks the output against the tool's
return type, turns every failure into an error envelope, counts the execution in the registry's
metrics in a ``finally``, and finishes the actor in its terminal state. A thread-mode tool is
handed to ``ThreadCalls``, a process-mode tool to the ``ProcessPool``, whose workers run
``process_worker`` (the ToolRunner's child side).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import msgspec
import structlog

from jobwarden.actors.cancellation import cancelled_from_outside
from jobwarden.actors.deadlines import Deadlines
from jobwarden.actors.job_actor import AHEAD, JobActor, Lost, Started
from jobwarden.actors.process_pool import Died, ProcessPool
from jobwarden.actors.process_worker import (
    Call,
    OutOfMemory,
    Pickled,
    Raised,
    Replies,
    Returned,
    Unencodable,
)
from jobwarden.actors.scheduler import Scheduler
from jobwarden.actors.states import SUCCEEDED as STATE_SUCCEEDED
from jobwarden.actors.states import JobState
from jobwarden.actors.thread_calls import ThreadCalls, ThreadRaised, ThreadsExhausted
from jobwarden.errors import (
    ErrorInfo,
    OutcomeType,
    StoreError,
    describe,
    plugin_failure,
    printable,
)
from jobwarden.logs import bind_job, unbind_job
from jobwarden.plugins.metrics import SUCCEEDED
from jobwarden.plugins.registry import PluginRegistry
from jobwarden.plugins.tool import Tool, reference

if TYPE_CHECKING:
    from jobwarden.tracing import JobTracing

log = structlog.get_logger("jobwarden.runner")
SHUTDOWN_REASON = "the supervisor shut down while the job was running"
CRASH_REASON = "the runner stopped abnormally while the job was running"


Outcome = tuple[JobState, Any, ErrorInfo | None]


class ToolRunner:
    """Runs one job at a time; ``current`` is the job in hand (failed as crashed if we crash).

    One cancel scope serves job after job, entered before each tool's first step so that scopes
    the tool opens itself nest inside it. It is cancelled only while a tool runs (by a cancel, or
    by the deadline watchdog) and is then left at once, so the next job starts in a fresh scope:
    a job that is not interrupted costs no cancel scope of its own.
    """

    __slots__ = (
        "_ahead",
        "_deadlines",
        "_guard",
        "_left_for_recovery",
        "_lost_outcome",
        "_on_lost",
        "_outcome",
        "_processes",
        "_registry",
        "_scheduler",
        "_threads",
        "_tracing",
        "current",
    )

    def __init__(
        self,
        registry: PluginRegistry,
        scheduler: Scheduler,
        deadlines: Deadlines,
        threads: ThreadCalls,
        processes: ProcessPool,
        *,
        write_behind: bool = False,
        tracing: JobTracing | None = None,
        left_for_recovery: Callable[[], bool] = lambda: False,
    ) -> None:
        self._registry = registry
        # Whether a job cut off by a stop stays as the store has it (the stop is a failed
        # store's, and the store durable): the next start recovers it rather than this runner
        # writing a cancel that could replace an outcome the store refused.
        self._left_for_recovery = left_for_recovery
        self._tracing = tracing
        self._scheduler = scheduler
        self._deadlines = deadlines
        self._threads = threads
        self._processes = processes
        self.current: JobActor | None = None
        self._outcome: Outcome = (JobState.FAILED, None, None)
        # Only a write-behind store can lose an outcome after the runner moved on: the guard
        # (five gc-tracked objects per idle runner) exists only then.
        self._guard = anyio.CancelScope() if write_behind else None
        self._lost_outcome: StoreError | None = None
        self._on_lost: Lost | None = self._lost if write_behind else None
        # With a write-behind store a job's start is queued, not waited for: the job comes back
        # through the scheduler once committed, and whichever runner is free runs it.
        self._ahead = scheduler if write_behind else None

    def serve(self) -> Awaitable[None]:
        """Run jobs until the scheduler closes; raise ``StoreError`` once an outcome is lost.

        A job's outcome is stored write-behind when the store allows it: the runner takes its
        next job without waiting for that commit. So is its running change: a tool that says
        ``retry_on_interrupt`` is called at once, any other job is started ahead and run (by
        whichever runner is free) once that change is committed. Should such a commit fail, the
        runner that queued it stops at once, whatever it is doing, and raises the store's error
        like a failed awaited write.
        """
        # Without a guard, the job loop itself: an idle runner's every wake-up and park passes
        # through each coroutine around it, so there is no layer here for nothing.
        return self._serve() if self._guard is None else self._serve_guarded(self._guard)

    async def _serve_guarded(self, guard: anyio.CancelScope) -> None:
        with guard:
            await self._serve()
        if self._lost_outcome is not None:
            raise self._lost_outcome

    def _lost(self, error: StoreError) -> None:
        if self._lost_outcome is None:
            self._lost_outcome = error
        assert self._guard is not None
        self._guard.cancel()

    async def _serve(self) -> None:
        """The job loop. The tool is called right here rather than in a helper coroutine: with
        thousands of jobs in flight, a frame per running job is one more object for every
        cyclic gc pass to walk."""
        scheduler = self._scheduler
        registry = self._registry
        deadlines = self._deadlines
        tracing = self._tracing
        cancelled_exc = anyio.get_cancelled_exc_class()
        while True:
            scope = anyio.CancelScope()
            with scope:
                while (actor := await scheduler.next()) is not None:
                    self.current = actor
                    bind_job(actor.record)
                    taken = True  # the job keeps its place in the scheduler until it has run
                    try:
                        # Only a write-behind store starts jobs ahead: no call for it elsewhere.
                        started = None if self._ahead is None else actor.take_started()
                        if started is None:
                            begun = await actor.start(lost=self._on_lost, ahead=self._ahead)
                            if not isinstance(begun, Started):
                                # Started ahead: the scheduler hands it back once committed.
                                taken = begun is not AHEAD
                                self.current = None
                                continue
                            started = begun
                        tool = actor.tool
                        ctx = started.ctx
                        actor.attach_scope(scope)
                        watch = deadlines.watch(started.deadline, scope, ctx)
                        outcome: Outcome | None = None
                        registry.begin_execution(tool.name)
                        began = time.perf_counter()
                        # The job's execute span is current while its tool runs (tracing on).
                        traced = None if tracing is None else tracing.enter(actor.id)
                        try:
                            if tool.mode == "async":
                                value = await tool.func(started.args, ctx)
                            elif tool.mode == "thread":
                                ctx.from_threads(anyio.lowlevel.current_token())
                                value = await self._threads.run(
                                    tool.name, tool.func, started.args, ctx
                                )
                            else:
                                trace = None if tracing is None else tracing.carrier(actor.id)
                                value = await self._processes.call(
                                    _call(tool, tool.func, started, trace), actor.progress
                                )
                            # The call's time ends here, in every branch: checking its output
                            # and logging its failure (a traceback rendered) are not the tool's.
                            ended = time.perf_counter()
                            outcome = _returned(actor, started, scope, value)
                        except cancelled_exc as exc:
                            ended = time.perf_counter()
                            if not scope.cancel_called and not cancelled_from_outside():
                                # asyncio's CancelledError raised by the plugin itself (it
                                # awaited a future something else cancelled): nobody cancelled
                                # the runner, so it is the plugin's failure, not a shutdown.
                                outcome = JobState.FAILED, None, _plugin_error(actor, exc)
                            else:
                                if scope.cancel_called:
                                    outcome = _stopped(actor, ctx.timed_out, started)
                                elif self._lost_outcome is None and not self._left_for_recovery():
                                    outcome = _shut_down(actor)
                                    with anyio.CancelScope(shield=True):
                                        await actor.finish(*outcome)
                                raise
                        except ThreadsExhausted as exc:
                            ended = time.perf_counter()
                            outcome = self._exhausted(actor, exc)
                        except BaseException as exc:
                            ended = time.perf_counter()
                            if not plugin_failure(exc, cancelled_exc):
                                raise
                            if scope.cancel_called:
                                outcome = _stopped(actor, ctx.timed_out, started)
                            else:
                                outcome = JobState.FAILED, None, _plugin_error(actor, exc)
                        finally:
                            if traced is not None and tracing is not None:
                                tracing.leave(traced)
                            actor.detach_scope()
                            deadlines.done(watch)
                            if outcome is None:
                                outcome = _crashed(actor)
                            error = outcome[2]
                            registry.record_execution(
                                tool.name,
                                error.type if error is not None else SUCCEEDED,
                                ended - began,
                            )
                            self._outcome = outcome
                        if scope.cancel_called:
                            break
                        await actor.finish(*outcome, lost=self._on_lost)
                    except BaseException:
                        unbind_job()  # the runner stops: what it logs next is about no job
                        raise
                    finally:
                        if taken:
                            scheduler.release(actor)
                    self.current = None
                else:
                    return
            # The scope was cancelled for the job in hand: finish it outside the scope.
            interrupted, self.current = self.current, None
            if interrupted is not None:
                await interrupted.finish(*self._outcome, lost=self._on_lost)

    def _exhausted(self, actor: JobActor, exc: ThreadsExhausted) -> Outcome:
        error = actor.error(
            OutcomeType.RESOURCE_EXHAUSTED,
            str(exc),
            abandoned_threads=exc.count,
            limit=self._threads.max_abandoned,
        )
        return JobState.FAILED, None, error


def _returned(actor: JobActor, started: Started, scope: anyio.CancelScope, value: Any) -> Outcome:
    """The outcome of a call that returned ``value`` (a worker's reply in process mode)."""
    if scope.cancel_called:
        return _stopped(actor, started.ctx.timed_out, started)
    if actor.tool.mode == "process":
        return _process_outcome(actor, value)
    return _checked_output(actor, value)


def _shut_down(actor: JobActor) -> Outcome:
    return JobState.CANCELLED, None, actor.error(OutcomeType.CANCELLED, SHUTDOWN_REASON)


def _crashed(actor: JobActor) -> Outcome:
    return JobState.FAILED, None, actor.error(OutcomeType.CRASHED, CRASH_REASON)


def _checked_output(actor: JobActor, value: Any) -> tuple[JobState, Any, ErrorInfo | None]:
    try:
        return STATE_SUCCEEDED, actor.tool.output_to_builtins(value), None
    except (TypeError, ValueError) as exc:
        return _invalid_output(actor, exc)


def _invalid_output(actor: JobActor, problem: object) -> tuple[JobState, Any, ErrorInfo | None]:
    message = printable(
        f"{actor.tool.name} returned a value that does not match its return type: {problem}"
    )
    return JobState.FAILED, None, actor.error(OutcomeType.INVALID_OUTPUT, message)


def _call(
    tool: Tool, func: Any, started: Started, trace: dict[str, str] | None
) -> Call[msgspec.Struct]:
    """The call a worker process runs: the function and input type by reference, and the job's
    trace context when tracing is on."""
    ctx = started.ctx
    return Call(
        target=reference(func),
        input_type=reference(tool.input_type),
        input=started.args,
        job_id=ctx.job_id,
        tool=tool.name,
        attempt=ctx.attempt,
        memory_mb=tool.memory_mb,
        cpu_s=tool.cpu_s,
        trace=trace,
    )


def _process_outcome(
    actor: JobActor, reply: Replies | Died
) -> tuple[JobState, Any, ErrorInfo | None]:
    """The job's outcome from a worker's reply, or from how the worker died."""
    tool: Tool = actor.tool
    match reply:
        case Returned(output=output):
            try:
                value = msgspec.msgpack.decode(output, type=tool.output_type)
            except msgspec.ValidationError as exc:
                return _invalid_output(actor, exc)
            return _checked_output(actor, value)
        case Pickled(output=output):
            # From the job's own worker, which runs the same plugin code as this process.
            return _checked_output(actor, pickle.loads(output))
        case Raised(exception=kind, message=message):
            log.warning("tool raised", job_id=actor.id, tool=tool.name, error=message)
            return (
                JobState.FAILED,
                None,
                actor.error(
                    OutcomeType.PLUGIN_ERROR, printable(message), exception=printable(kind)
                ),
            )
        case OutOfMemory(message=message):
            error = actor.error(OutcomeType.RESOURCE_EXHAUSTED, message, memory_mb=tool.memory_mb)
            return JobState.FAILED, None, error
        case Died(signal="SIGXCPU"):
            message = f"{tool.name} used more than its {tool.cpu_s} CPU seconds"
            error = actor.error(
                OutcomeType.RESOURCE_EXHAUSTED, message, signal="SIGXCPU", cpu_s=tool.cpu_s
            )
            return JobState.FAILED, None, error
        case Died(exit_code=code, signal=signame):
            how = f"exit code {code}" if signame is None else f"signal {signame}"
            message = f"the worker process running {tool.name} died ({how})"
            details = {"exit_code": code} if signame is None else {"signal": signame}
            return JobState.FAILED, None, actor.error(OutcomeType.CRASHED, message, **details)
        case Unencodable(message=message):
            return _invalid_output(actor, message)


def _stopped(actor: JobActor, timed_out: bool, started: Started) -> Outcome:
    if not timed_out:
        error = actor.error(OutcomeType.CANCELLED, "cancelled while running")
        return JobState.CANCELLED, None, error
    timeout = actor.record.timeout_s or actor.tool.timeout_s
    message = started.timeout_message or f"{actor.tool.name} did not finish within {timeout:g}s"
    error = actor.error(OutcomeType.TIMEOUT, message, timeout_s=timeout)
    return JobState.TIMED_OUT, None, error


def _plugin_error(actor: JobActor, exc: BaseException) -> ErrorInfo:
    log.warning("tool raised", job_id=actor.id, tool=actor.tool.name, exc_info=exc)
    if isinstance(exc, ThreadRaised):
        exc = exc.exception
    # A class made at run time can be named anything, lone surrogates included.
    kind = printable(f"{type(exc).__module__}.{type(exc).__qualname__}")
    return actor.error(OutcomeType.PLUGIN_ERROR, describe(exc), exception=kind)
