"""The ToolRunner: the one place in jobwarden that calls plugin code.

A pool of ToolRunners pulls job actors from the scheduler. For each job it starts the actor,
calls the tool under the job's deadline in a cancel scope, checks the output against the tool's
return type, turns every failure into an error envelope, counts the execution in the registry's
metrics in a ``finally``, and finishes the actor in its terminal state. A thread-mode tool is
handed to ``ThreadCalls``, a process-mode tool to the ``ProcessPool``, whose workers run
``process_worker`` (the ToolRunner's child side).
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import msgspec
import structlog

from jobwarden.actors.deadlines import Deadlines
from jobwarden.actors.job_actor import JobActor, Started
from jobwarden.actors.process_pool import Died, ProcessPool
from jobwarden.actors.process_worker import (
    Call,
    OutOfMemory,
    Raised,
    Replies,
    Returned,
    Unencodable,
)
from jobwarden.actors.scheduler import Scheduler
from jobwarden.actors.states import JobState
from jobwarden.actors.thread_calls import ThreadCalls, ThreadsExhausted
from jobwarden.errors import ErrorInfo, OutcomeType, StoreError
from jobwarden.logs import bind_job, unbind_job
from jobwarden.plugins.metrics import SUCCEEDED
from jobwarden.plugins.registry import PluginRegistry
from jobwarden.plugins.tool import Tool, reference

log = structlog.get_logger("jobwarden.runner")
SHUTDOWN_REASON = "the supervisor shut down while the job was running"
CRASH_REASON = "the runner stopped abnormally while the job was running"


Outcome = tuple[JobState, Any, ErrorInfo | None]
_encoder = msgspec.msgpack.Encoder()


class ToolRunner:
    """Runs one job at a time; ``current`` is the job in hand (failed as crashed if we crash).

    One cancel scope serves job after job, entered before each tool's first step so that scopes
    the tool opens itself nest inside it. It is cancelled only while a tool runs (by a cancel, or
    by the deadline watchdog) and is then left at once, so the next job starts in a fresh scope:
    a job that is not interrupted costs no cancel scope of its own.
    """

    __slots__ = (
        "_cancelled_exc",
        "_deadlines",
        "_guard",
        "_lost_outcome",
        "_outcome",
        "_processes",
        "_registry",
        "_scheduler",
        "_threads",
        "current",
    )

    def __init__(
        self,
        registry: PluginRegistry,
        scheduler: Scheduler,
        deadlines: Deadlines,
        threads: ThreadCalls,
        processes: ProcessPool,
    ) -> None:
        self._registry = registry
        self._scheduler = scheduler
        self._deadlines = deadlines
        self._threads = threads
        self._processes = processes
        self.current: JobActor | None = None
        self._outcome: Outcome = (JobState.FAILED, None, None)
        self._cancelled_exc: type[BaseException] = BaseException
        self._guard = anyio.CancelScope()
        self._lost_outcome: StoreError | None = None

    async def serve(self) -> None:
        """Run jobs until the scheduler closes; raise ``StoreError`` once an outcome is lost.

        A job's outcome is stored write-behind when the store allows it: the runner takes its
        next job without waiting for that commit (so is the running change of a tool that says
        ``retry_on_interrupt``). Should such a commit fail, the runner stops at once, whatever
        it is doing, and raises the store's error like a failed awaited write.
        """
        with self._guard:
            await self._serve()
        if self._lost_outcome is not None:
            raise self._lost_outcome

    def _lost(self, error: StoreError) -> None:
        if self._lost_outcome is None:
            self._lost_outcome = error
        self._guard.cancel()

    async def _serve(self) -> None:
        scheduler = self._scheduler
        self._cancelled_exc = anyio.get_cancelled_exc_class()
        while True:
            scope = anyio.CancelScope()
            with scope:
                while (actor := await scheduler.next()) is not None:
                    self.current = actor
                    bind_job(actor.record)
                    try:
                        started = await actor.start(lost=self._lost)
                        if started is not None:
                            await self._execute(actor, started, scope)
                            if scope.cancel_called:
                                break
                            await actor.finish(*self._outcome, lost=self._lost)
                    except BaseException:
                        unbind_job()  # the runner stops: what it logs next is about no job
                        raise
                    finally:
                        scheduler.release(actor)
                    self.current = None
                else:
                    return
            # The scope was cancelled for the job in hand: finish it outside the scope.
            interrupted, self.current = self.current, None
            if interrupted is not None:
                await interrupted.finish(*self._outcome, lost=self._lost)

    async def _execute(self, actor: JobActor, started: Started, scope: anyio.CancelScope) -> None:
        """Call the tool; leaves the job's outcome in ``self._outcome``."""
        tool = actor.tool
        ctx = started.ctx
        actor.attach_scope(scope)
        watch = self._deadlines.watch(started.deadline, scope, ctx)
        state: JobState | None = None
        result: Any = None
        error: ErrorInfo | None = None
        self._registry.begin_execution(tool.name)
        began = time.perf_counter()
        try:
            if tool.mode == "process":
                reply = await self._processes.call(_call(tool, tool.func, started))
                if scope.cancel_called:
                    state, error = _stopped(actor, ctx.timed_out, started)
                else:
                    state, result, error = _process_outcome(actor, reply)
            else:
                if tool.mode == "async":
                    value = await tool.func(started.args, ctx)
                else:
                    value = await self._threads.run(tool.name, tool.func, started.args, ctx)
                if scope.cancel_called:
                    state, error = _stopped(actor, ctx.timed_out, started)
                else:
                    state, result, error = _checked_output(actor, value)
        except self._cancelled_exc:
            if scope.cancel_called:
                state, error = _stopped(actor, ctx.timed_out, started)
            else:
                state, error = (
                    JobState.CANCELLED,
                    actor.error(OutcomeType.CANCELLED, SHUTDOWN_REASON),
                )
                with anyio.CancelScope(shield=True):
                    await actor.finish(state, result, error)
            raise
        except ThreadsExhausted as exc:
            state, error = (
                JobState.FAILED,
                actor.error(
                    OutcomeType.RESOURCE_EXHAUSTED,
                    str(exc),
                    abandoned_threads=exc.count,
                    limit=self._threads.max_abandoned,
                ),
            )
        except Exception as exc:
            if scope.cancel_called:
                state, error = _stopped(actor, ctx.timed_out, started)
            else:
                state, error = JobState.FAILED, _plugin_error(actor, exc)
        finally:
            actor.detach_scope()
            self._deadlines.done(watch)
            if state is None:
                state, error = JobState.FAILED, actor.error(OutcomeType.CRASHED, CRASH_REASON)
            outcome = error.type if error is not None else SUCCEEDED
            self._registry.record_execution(tool.name, outcome, time.perf_counter() - began)
            self._outcome = (state, result, error)


def _checked_output(actor: JobActor, value: Any) -> tuple[JobState, Any, ErrorInfo | None]:
    try:
        return JobState.SUCCEEDED, actor.tool.output_to_builtins(value), None
    except (TypeError, ValueError) as exc:
        return _invalid_output(actor, exc)


def _invalid_output(actor: JobActor, problem: object) -> tuple[JobState, Any, ErrorInfo | None]:
    message = f"{actor.tool.name} returned a value that does not match its return type: {problem}"
    return JobState.FAILED, None, actor.error(OutcomeType.INVALID_OUTPUT, message)


def _call(tool: Tool, func: Any, started: Started) -> Call:
    """The encoded call a worker process runs: the function and input type by reference."""
    ctx = started.ctx
    return Call(
        target=reference(func),
        input_type=reference(tool.input_type),
        input=msgspec.Raw(_encoder.encode(started.args)),
        job_id=ctx.job_id,
        tool=tool.name,
        attempt=ctx.attempt,
        memory_mb=tool.memory_mb,
        cpu_s=tool.cpu_s,
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
        case Raised(exception=kind, message=message):
            log.warning("tool raised", job_id=actor.id, tool=tool.name, error=message)
            return (
                JobState.FAILED,
                None,
                actor.error(OutcomeType.PLUGIN_ERROR, message, exception=kind),
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


def _stopped(actor: JobActor, timed_out: bool, started: Started) -> tuple[JobState, ErrorInfo]:
    if not timed_out:
        return JobState.CANCELLED, actor.error(OutcomeType.CANCELLED, "cancelled while running")
    timeout = actor.record.timeout_s or actor.tool.timeout_s
    return JobState.TIMED_OUT, actor.error(
        OutcomeType.TIMEOUT, started.timeout_message, timeout_s=timeout
    )


def _plugin_error(actor: JobActor, exc: Exception) -> ErrorInfo:
    log.warning("tool raised", job_id=actor.id, tool=actor.tool.name, exc_info=exc)
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return actor.error(OutcomeType.PLUGIN_ERROR, f"{type(exc).__name__}: {exc}", exception=kind)
