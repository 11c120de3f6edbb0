"""The ToolRunner: the one place in jobwarden that calls plugin code.

A pool of ToolRunners pulls job actors from the scheduler. For each job it starts the actor,
calls the tool under the job's deadline in a cancel scope, checks the output against the tool's
return type, turns every failure into an error envelope, counts the execution in the registry's
metrics in a ``finally``, and finishes the actor in its terminal state.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import structlog

from jobwarden.actors.deadlines import Deadlines
from jobwarden.actors.job_actor import JobActor, Started
from jobwarden.actors.scheduler import Scheduler
from jobwarden.actors.states import JobState
from jobwarden.errors import ErrorInfo, OutcomeType
from jobwarden.plugins.metrics import SUCCEEDED
from jobwarden.plugins.registry import PluginRegistry
from jobwarden.plugins.tool import Tool

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
        "_cancelled_exc",
        "_deadlines",
        "_outcome",
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
        threads: anyio.CapacityLimiter,
    ) -> None:
        self._registry = registry
        self._scheduler = scheduler
        self._deadlines = deadlines
        self._threads = threads
        self.current: JobActor | None = None
        self._outcome: Outcome = (JobState.FAILED, None, None)
        self._cancelled_exc: type[BaseException] = BaseException

    async def serve(self) -> None:
        """Run jobs until the scheduler closes."""
        scheduler = self._scheduler
        self._cancelled_exc = anyio.get_cancelled_exc_class()
        while True:
            scope = anyio.CancelScope()
            with scope:
                while (actor := await scheduler.next()) is not None:
                    self.current = actor
                    try:
                        started = await actor.start()
                        if started is not None:
                            await self._execute(actor, started, scope)
                            if scope.cancel_called:
                                break
                            await actor.finish(*self._outcome)
                    finally:
                        scheduler.release(actor)
                    self.current = None
                else:
                    return
            # The scope was cancelled for the job in hand: finish it outside the scope.
            interrupted, self.current = self.current, None
            if interrupted is not None:
                await interrupted.finish(*self._outcome)

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
            if tool.mode == "async":
                value = await tool.func(started.args, ctx)
            else:
                value = await anyio.to_thread.run_sync(
                    tool.func, started.args, ctx, abandon_on_cancel=True, limiter=self._threads
                )
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
    tool: Tool = actor.tool
    try:
        return JobState.SUCCEEDED, tool.output_to_builtins(value), None
    except (TypeError, ValueError) as exc:
        message = f"{tool.name} returned a value that does not match its return type: {exc}"
        return JobState.FAILED, None, actor.error(OutcomeType.INVALID_OUTPUT, message)


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
