"""Every way a job can end, with its record, its events and its tool's metrics."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from structlog.testing import capture_logs

from jobwarden import (
    JobEvent,
    JobRecord,
    JobState,
    MemoryStore,
    Plugin,
    Supervisor,
    ToolContext,
    builtin,
    errors,
)
from jobwarden.errors import OutcomeType
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import (
    UNDECODABLE,
    CheckedIn,
    Gates,
    KeyIn,
    PausingStore,
    TextOut,
    Unreadable,
    fake_plugin,
    scoped_plugin,
)

pytestmark = pytest.mark.anyio


class AnyOut(msgspec.Struct):
    """Any value: what a loosely typed tool takes or returns."""

    value: Any


async def events_of(sup: Supervisor, job_id: str) -> list[JobEvent]:
    """The job's whole event history, until its terminal event."""
    async with sup.subscribe(job_id=job_id) as events:
        return [e async for e in events if isinstance(e, JobEvent)]


def kinds(events: list[JobEvent]) -> list[str]:
    return [e.type.removeprefix("jobwarden.job.") for e in events]


async def test_success_record_events_and_metrics() -> None:
    """A succeeded job carries its result, three ordered events, and one success in metrics."""
    async with Supervisor(plugins=[builtin]) as sup:
        rec = await sup.submit("builtin.echo", {"text": "hi"})
        assert rec.state is JobState.QUEUED
        done = await sup.wait(rec.id, timeout=5)
        assert done.state is JobState.SUCCEEDED
        assert done.result == {"text": "hi"}
        assert done.error is None
        assert done.attempt == 1
        assert done.created_at <= done.started_at <= done.finished_at  # type: ignore[operator]
        events = await events_of(sup, rec.id)
        assert kinds(events) == ["queued", "running", "succeeded"]
        offsets = [e.offset for e in events]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == 3
        assert events[-1].data.result == {"text": "hi"}
        assert all(e.subject == rec.id and e.specversion == "1.0" for e in events)
        metrics = sup.registry.metrics("builtin.echo")
        assert (metrics.calls, metrics.successes, metrics.errors, metrics.in_flight) == (1, 1, 0, 0)
        assert metrics.last_ms is not None
        assert metrics.p95_ms is not None


async def test_plugin_exception_fails_the_job_with_an_envelope() -> None:
    """A tool that raises fails its job with plugin_error, and the error is counted."""
    async with Supervisor(plugins=[builtin]) as sup:
        rec = await sup.submit("builtin.fail", {"message": "boom"})
        done = await sup.wait(rec.id, timeout=5)
        assert done.state is JobState.FAILED
        assert done.error is not None
        assert done.error.type == OutcomeType.PLUGIN_ERROR
        assert done.error.message == "RequestedFailure: boom"
        assert done.error.job_id == rec.id
        assert done.error.tool == "builtin.fail"
        assert done.error.details["exception"].endswith("RequestedFailure")
        assert kinds(await events_of(sup, rec.id)) == ["queued", "running", "failed"]
        metrics = sup.registry.metrics("builtin.fail")
        assert (metrics.calls, metrics.errors, metrics.failures_by_type) == (
            1,
            1,
            {"plugin_error": 1},
        )


async def test_run_raises_job_failed_and_returns_results() -> None:
    """Supervisor.run returns a success's result and raises JobFailed with the record otherwise."""
    async with Supervisor(plugins=[builtin]) as sup:
        assert await sup.run("builtin.echo", {"text": "x"}, timeout=5) == {"text": "x"}
        with pytest.raises(errors.JobFailed) as caught:
            await sup.run("builtin.fail", {}, timeout=5)
        assert caught.value.record.state is JobState.FAILED
        assert caught.value.error is not None
        assert caught.value.error.type == "plugin_error"


@pytest.mark.parametrize("tool", ["fake.bad_output", "fake.lying_struct"])
async def test_invalid_output_fails_the_job(tool: str) -> None:
    """Output that does not match the declared return type fails the job with invalid_output."""
    async with Supervisor(plugins=[fake_plugin(Gates())]) as sup:
        done = await sup.wait((await sup.submit(tool, {})).id, timeout=5)
        assert done.state is JobState.FAILED
        assert done.error is not None
        assert done.error.type == OutcomeType.INVALID_OUTPUT
        assert done.result is None
        assert sup.registry.metrics(tool).failures_by_type == {"invalid_output": 1}


async def test_timeout_ends_the_job_timed_out() -> None:
    """A call past its deadline is cancelled and the job ends timed_out with a timeout error."""
    async with Supervisor(plugins=[fake_plugin(Gates())]) as sup:
        rec = await sup.submit("fake.hang", {})
        done = await sup.wait(rec.id, timeout=5)
        assert done.state is JobState.TIMED_OUT
        assert done.error is not None
        assert done.error.type == OutcomeType.TIMEOUT
        assert done.error.details == {"timeout_s": 0.05}
        assert done.error.message == "fake.hang did not finish within 0.05s"
        assert kinds(await events_of(sup, rec.id)) == ["queued", "running", "timed_out"]
        metrics = sup.registry.metrics("fake.hang")
        assert (metrics.timeouts, metrics.errors, metrics.calls) == (1, 0, 1)


async def test_submit_timeout_overrides_the_tool_timeout() -> None:
    """timeout_s given at submit replaces the tool's own timeout for that job."""
    async with Supervisor(plugins=[builtin]) as sup:
        rec = await sup.submit("builtin.sleep", {"seconds": 30}, timeout_s=0.05)
        assert rec.timeout_s == 0.05
        done = await sup.wait(rec.id, timeout=5)
        assert done.state is JobState.TIMED_OUT
        assert done.error is not None
        assert done.error.message == "builtin.sleep did not finish within 0.05s"


async def test_cancel_while_queued() -> None:
    """Cancelling a queued job ends it at once; it never runs and no execution is counted."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)], concurrency=1) as sup:
        first = await sup.submit("fake.gate", {"key": "a"})
        await gates.wait_entered("a")
        queued = await sup.submit("fake.gate", {"key": "b"})
        cancelled = await sup.cancel(queued.id)
        assert cancelled.state is JobState.CANCELLED
        assert cancelled.started_at is None
        assert cancelled.error is not None
        assert cancelled.error.type == OutcomeType.CANCELLED
        gates.open("a")
        assert (await sup.wait(first.id, timeout=5)).state is JobState.SUCCEEDED
        assert kinds(await events_of(sup, queued.id)) == ["queued", "cancelled"]
        assert sup.registry.metrics("fake.gate").calls == 1


async def test_cancel_while_running() -> None:
    """Cancelling a running job interrupts the call and ends it cancelled, counted as such."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.gate", {"key": "a"})
        await gates.wait_entered("a")
        cancelled = await sup.cancel(rec.id)
        assert cancelled.state is JobState.CANCELLED
        assert cancelled.error is not None
        assert cancelled.error.message == "cancelled while running"
        assert kinds(await events_of(sup, rec.id)) == ["queued", "running", "cancelled"]
        metrics = sup.registry.metrics("fake.gate")
        assert (metrics.cancellations, metrics.in_flight) == (1, 0)


async def test_cancel_running_thread_job_returns_at_once() -> None:
    """A thread-mode job is cancelled without waiting for its thread, which is abandoned."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.blocking", {"key": "t"})
        await gates.wait_entered("t")
        assert (await sup.cancel(rec.id)).state is JobState.CANCELLED
        gates.open("t")


async def test_tool_swallowing_cancellation_still_ends_cancelled() -> None:
    """A tool that turns its cancellation into another error still ends cancelled, not failed."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.stubborn", {"key": "s"})
        await gates.wait_entered("s")
        assert (await sup.cancel(rec.id)).state is JobState.CANCELLED


def _obstinate_plugin(gates: Gates) -> Plugin:
    plugin = Plugin("obstinate", version="1.0.0")

    @plugin.tool(timeout=30)
    async def finish_anyway(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Wait at the gate; cancelled, swallow it and return a result anyway."""
        try:
            await gates.pass_through(inp.key)
        except anyio.get_cancelled_exc_class():
            return TextOut(text="finished anyway")
        return TextOut(text="passed")

    return plugin


async def test_a_tool_returning_despite_its_cancel_still_ends_cancelled() -> None:
    """A result a tool returns after swallowing its cancellation is dropped: cancelled, counted
    as a cancel, not a success."""
    gates = Gates()
    async with Supervisor(plugins=[_obstinate_plugin(gates)]) as sup:
        rec = await sup.submit("obstinate.finish_anyway", {"key": "c"})
        await gates.wait_entered("c")
        cancelled = await sup.cancel(rec.id)
        metrics = sup.registry.metrics("obstinate.finish_anyway")
    assert (cancelled.state, cancelled.result) == (JobState.CANCELLED, None)
    assert (metrics.successes, metrics.cancellations) == (0, 1)


async def test_a_tool_returning_despite_its_timeout_still_times_out() -> None:
    """A tool that swallows the cancellation its timeout sent and returns ends timed_out, its
    late result dropped."""
    gates = Gates()
    async with Supervisor(plugins=[_obstinate_plugin(gates)]) as sup:
        rec = await sup.submit("obstinate.finish_anyway", {"key": "t"}, timeout_s=0.05)
        done = await sup.wait(rec.id, timeout=10)
    assert (done.state, done.result) == (JobState.TIMED_OUT, None)
    assert done.error is not None
    assert done.error.type == OutcomeType.TIMEOUT


async def test_cancel_finished_job_is_refused() -> None:
    """Cancelling a terminal job raises JobFinished and changes nothing."""
    async with Supervisor(plugins=[builtin]) as sup:
        rec = await sup.submit("builtin.echo", {"text": "x"})
        await sup.wait(rec.id, timeout=5)
        with pytest.raises(errors.JobFinished):
            await sup.cancel(rec.id)
        assert (await sup.get(rec.id)).state is JobState.SUCCEEDED


async def test_no_retry_without_a_policy() -> None:
    """Without a retry policy a failure is final: attempt stays 1 and no retrying event exists."""
    async with Supervisor(plugins=[builtin]) as sup:
        rec = await sup.submit("builtin.fail", {})
        done = await sup.wait(rec.id, timeout=5)
        assert done.attempt == 1
        assert "retrying" not in kinds(await events_of(sup, rec.id))


@pytest.mark.parametrize("mode", ["async", "thread"])
async def test_a_tool_calling_sys_exit_fails_its_job_and_nothing_else(mode: str) -> None:
    """sys.exit() in a tool (argparse's usage error raises the same SystemExit) fails that job
    as plugin_error naming it, and the supervisor goes on running jobs."""
    plugin = Plugin("exiting", version="1.0.0")

    @plugin.tool(timeout=5.0, name="leave_async")
    async def leave_async(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Exit, as a command-line tool's code would."""
        sys.exit(2)

    @plugin.tool(timeout=5.0, mode="thread", name="leave_thread")
    def leave_thread(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """The same, in a worker thread."""
        sys.exit(2)

    tool = f"exiting.leave_{mode}"
    async with Supervisor(plugins=[plugin, builtin]) as sup:
        done = await sup.wait((await sup.submit(tool, {"key": "k"})).id, timeout=5)
        assert await sup.run("builtin.echo", {"text": "still here"}) == {"text": "still here"}
        metrics = sup.registry.metrics(tool)
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert (done.error.type, done.error.message) == (OutcomeType.PLUGIN_ERROR, "SystemExit: 2")
    assert done.error.details == {"exception": "builtins.SystemExit"}
    assert metrics.failures_by_type == {"plugin_error": 1}


@pytest.mark.parametrize("durable", [False, True])
@pytest.mark.parametrize(
    ("tool", "error_type", "says"),
    [
        ("files.name", OutcomeType.INVALID_OUTPUT, "not valid Unicode"),
        ("files.missing", OutcomeType.PLUGIN_ERROR, "FileNotFoundError: caf\\udcff"),
        ("files.rude", OutcomeType.PLUGIN_ERROR, "Unreadable: <its message could not be read"),
    ],
)
async def test_what_a_tool_returns_or_raises_never_poisons_its_job(
    tmp_path: Path, durable: bool, tool: str, error_type: OutcomeType, says: str
) -> None:
    """A result holding a lone surrogate is invalid_output, an exception whose text holds one
    (or cannot be read at all) plugin_error with a printable message: on either store, with no
    runner crash, the job stays readable and listable."""
    plugin = Plugin("files", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def name(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Return a file name that is not valid UTF-8."""
        return TextOut(text=UNDECODABLE)

    @plugin.tool(timeout=5.0)
    async def missing(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Fail naming a file name that is not valid UTF-8."""
        raise FileNotFoundError(UNDECODABLE)

    @plugin.tool(timeout=5.0)
    async def rude(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Fail with an exception whose text cannot even be read."""
        raise Unreadable

    store = SqliteStore(tmp_path / "jobs.db") if durable else MemoryStore()
    with capture_logs() as logs:
        async with Supervisor(plugins=[plugin, builtin], store=store) as sup:
            done = await sup.wait((await sup.submit(tool, {"key": "k"})).id, timeout=5)
            listed = await sup.list_jobs()
            assert await sup.run("builtin.echo", {"text": "next"}) == {"text": "next"}
    assert (done.state, done.result) == (JobState.FAILED, None)
    assert done.error is not None
    assert done.error.type == error_type
    assert says in done.error.message
    msgspec.json.encode(done)  # what every read of the job sends
    assert [job.id for job in listed.jobs] == [done.id]
    assert not [e for e in logs if e["event"] == "tool runner crashed; restarting it"]


@pytest.mark.parametrize("durable", [False, True])
@pytest.mark.parametrize("shape", ["deep", "cycle"])
async def test_a_result_nested_too_deeply_or_holding_itself_is_invalid_output(
    tmp_path: Path, durable: bool, shape: str
) -> None:
    """A result nested past the recursion limit, or a list holding itself, is invalid_output
    saying so (it was plugin_error, a RecursionError), on either store, and the next job runs."""
    plugin = Plugin("shapes", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def make(inp: KeyIn, ctx: ToolContext) -> AnyOut:
        """Return a list nested 5,000 deep, or one that holds itself."""
        value: Any = []
        if inp.key == "cycle":
            value.append(value)
        else:
            for _ in range(5000):
                value = [value]
        return AnyOut(value=value)

    store = SqliteStore(tmp_path / "jobs.db") if durable else MemoryStore()
    async with Supervisor(plugins=[plugin, builtin], store=store) as sup:
        done = await sup.wait((await sup.submit("shapes.make", {"key": shape})).id, timeout=5)
        assert await sup.run("builtin.echo", {"text": "next"}) == {"text": "next"}
        restarts = sup.statistics().restarts
    assert (done.state, done.result) == (JobState.FAILED, None)
    assert done.error is not None
    assert done.error.type == OutcomeType.INVALID_OUTPUT
    assert done.error.message.endswith("it is nested too deeply for JSON, or holds itself")
    assert restarts == 0


async def test_progress_reported_after_the_job_ended_is_dropped() -> None:
    """A tool's context kept past its job's end reports progress into nothing: no error, no
    event, and the finished record keeps its progress."""
    kept: list[ToolContext] = []
    plugin = Plugin("leaky", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def keep(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Return at once, keeping the context (as a tool leaking it to a late callback would)."""
        kept.append(ctx)
        return TextOut(text=inp.key)

    async with Supervisor(plugins=[plugin]) as sup:
        rec = await sup.submit("leaky.keep", {"key": "k"})
        done = await sup.wait(rec.id, timeout=5)
        await kept[0].progress(0.9, "too late")
        assert await sup.get(rec.id) == done
        assert kinds(await events_of(sup, rec.id)) == ["queued", "running", "succeeded"]
    assert done.progress is None


async def test_progress_events_and_record() -> None:
    """ctx.progress emits progress events with the message and updates the record."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.progress", {"key": "p"})
        await gates.wait_entered("p")
        assert (await sup.get(rec.id)).progress == 0.5
        gates.open("p")
        await sup.wait(rec.id, timeout=5)
        events = await events_of(sup, rec.id)
        assert kinds(events) == ["queued", "running", "progress", "progress", "succeeded"]
        assert [(e.data.progress, e.data.message) for e in events[2:4]] == [
            (0.25, "quarter"),
            (0.5, "half"),
        ]


@pytest.mark.parametrize("durable", [False, True])
async def test_submit_errors_create_no_job(tmp_path: Path, durable: bool) -> None:
    """Unknown tools, invalid input and bad timeouts (not positive, infinite or an int too large
    for a float, not a number, a bool) are refused before any job exists, and a timeout of a
    float subclass (numpy's) is stored as a float."""
    store = SqliteStore(tmp_path / "jobs.db") if durable else MemoryStore()
    async with Supervisor(plugins=[builtin], store=store) as sup:
        with pytest.raises(errors.ToolNotFound):
            await sup.submit("builtin.nope", {})
        with pytest.raises(errors.InvalidInput) as caught:
            await sup.submit("builtin.echo", {"text": 5})
        assert "$.text" in caught.value.message
        assert caught.value.info().tool == "builtin.echo"
        with pytest.raises(errors.InvalidInput):
            await sup.submit("builtin.echo", {"text": "x", "extra": 1})
        refused: tuple[Any, ...] = (0, "5", True, float("nan"), float("inf"), 10**400, -(10**400))
        for timeout_s in refused:
            with pytest.raises(errors.InvalidRequest, match="timeout_s must be a positive number"):
                await sup.submit("builtin.echo", {"text": "x"}, timeout_s=timeout_s)
        assert (await sup.list_jobs()).jobs == []

        class Seconds(float):
            """A float of another type, as numpy's float64 is."""

        kept = await sup.submit("builtin.echo", {"text": "x"}, timeout_s=Seconds(5))
        done = await sup.wait(kept.id, timeout=5)
    assert type(kept.timeout_s) is float
    assert (done.state, done.timeout_s) == (JobState.SUCCEEDED, 5.0)
    msgspec.json.encode(done)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("crash", "RuntimeError: the check itself is broken"),
        ("exit", "SystemExit: 3"),
        ("recurse", "RecursionError: maximum recursion depth exceeded"),
    ],
)
async def test_an_input_check_that_raises_refuses_only_that_input(key: str, says: str) -> None:
    """An input type's __post_init__ that raises anything (sys.exit() included) refuses that
    input as InvalidInput and creates no job; other inputs still run."""
    plugin = Plugin("checked", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def run(inp: CheckedIn, ctx: ToolContext) -> TextOut:
        """Echo the key."""
        return TextOut(text=inp.key)

    async with Supervisor(plugins=[plugin]) as sup:
        with pytest.raises(errors.InvalidInput, match=f"input check raised {says}"):
            await sup.submit("checked.run", {"key": key})
        assert (await sup.list_jobs()).jobs == []
        assert await sup.run("checked.run", {"key": "fine"}) == {"text": "fine"}


class Chain(msgspec.Struct):
    """A recursive input type: each link may hold the next."""

    next: Chain | None = None


async def test_an_input_too_deep_for_its_type_is_the_inputs_fault_not_the_tools() -> None:
    """An input nested past msgspec's depth limit while converting to a recursive type is
    InvalidInput saying so, with no warning blaming the tool's input check."""
    plugin = Plugin("chained", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def length(inp: Chain, ctx: ToolContext) -> int:
        """Count the links."""
        return 0 if inp.next is None else 1

    deep: dict[str, Any] = {}
    for _ in range(5000):
        deep = {"next": deep}
    async with Supervisor(plugins=[plugin]) as sup:
        with capture_logs() as logs, pytest.raises(errors.InvalidInput) as caught:
            await sup.submit("chained.length", deep)
        assert (
            caught.value.message == "the job's input is nested too deeply for JSON, or holds itself"
        )
        assert caught.value.info().tool == "chained.length"
        assert logs == []
        assert (await sup.list_jobs()).jobs == []
        assert await sup.run("chained.length", {"next": {}}) == 1


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


def _holding_itself() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


NOT_UNICODE = (
    "holds a string that is not valid Unicode (a lone surrogate, as bytes decoded with"
    " surrogateescape give)"
)
TOO_DEEP = "is nested too deeply for JSON, or holds itself"
NO_JSON_TYPE = "holds a value no JSON can hold (Encoding objects of type object is unsupported)"


@pytest.mark.parametrize("durable", [False, True])
@pytest.mark.parametrize(
    ("part", "fields", "why"),
    [
        ("input", {"input": {"value": UNDECODABLE}}, NOT_UNICODE),
        ("input", {"input": {"value": _nested(5000)}}, TOO_DEEP),
        ("input", {"input": {"value": _holding_itself()}}, TOO_DEEP),
        ("input", {"input": {"value": object()}}, NO_JSON_TYPE),
        ("owner", {"owner": UNDECODABLE}, NOT_UNICODE),
        ("idempotency key", {"idempotency_key": UNDECODABLE}, NOT_UNICODE),
    ],
    ids=["surrogate", "deep", "cycle", "object", "owner", "key"],
)
async def test_a_submit_no_json_can_hold_is_invalid_input(
    tmp_path: Path, durable: bool, part: str, fields: dict[str, Any], why: str
) -> None:
    """An input, owner or idempotency key no JSON can hold (a lone surrogate; an input nested
    too deeply, holding itself or holding an object in an Any field: a caller embedding the
    supervisor can pass these) is InvalidInput naming it, on either store: no job, no event, and
    the submits made beside it are stored and run."""
    plugin = Plugin("loose", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def take(inp: AnyOut, ctx: ToolContext) -> AnyOut:
        """Return the input."""
        return inp

    store = SqliteStore(tmp_path / "jobs.db") if durable else MemoryStore()
    submit: dict[str, Any] = {"input": {"value": "bad"}} | fields
    async with Supervisor(plugins=[plugin], store=store) as sup:
        async with sup.subscribe() as events:
            async with anyio.create_task_group() as tg:
                tg.start_soon(sup.run, "loose.take", {"value": "before"})
                await anyio.wait_all_tasks_blocked()  # its put is in the open commit
                with pytest.raises(errors.InvalidInput) as caught:
                    await sup.submit("loose.take", submit.pop("input"), **submit)
                tg.start_soon(sup.run, "loose.take", {"value": "after"})
            seen = [await anext(events) for _ in range(6)]
        listed = await sup.list_jobs()
        assert sup.statistics().queued == 0
    assert caught.value.message == f"the job's {part} {why}: it cannot be stored"
    assert caught.value.info().tool == "loose.take"
    assert sorted(job.input["value"] for job in listed.jobs) == ["after", "before"]
    assert {job.state for job in listed.jobs} == {JobState.SUCCEEDED}
    assert {event.subject for event in seen} == {job.id for job in listed.jobs}


class BuggyStore(MemoryStore):
    """A memory store whose first put fails with a TypeError of its own, whatever the job."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def put(self, record: JobRecord, event: JobEvent) -> JobRecord:
        if not self.failed:
            self.failed = True
            raise TypeError("a bug in the store")
        return await super().put(record, event)


async def test_a_stores_own_type_error_is_not_blamed_on_the_input() -> None:
    """A TypeError from a store's put whose job every JSON could hold propagates as it is, not
    as InvalidInput about the caller's values, and leaves no job or event behind."""
    store = BuggyStore()
    async with Supervisor(plugins=[builtin], store=store) as sup, sup.subscribe() as events:
        with pytest.raises(TypeError, match="a bug in the store"):
            await sup.submit("builtin.echo", {"text": "lost"})
        kept = await sup.submit("builtin.echo", {"text": "kept"})
        first = await anext(events)
        listed = await sup.list_jobs()
    assert (first.subject, first.type) == (kept.id, "jobwarden.job.queued")
    assert [job.id for job in listed.jobs] == [kept.id]


async def test_a_wait_for_no_number_of_seconds_is_refused_and_the_supervisor_runs_on() -> None:
    """wait(timeout=) of NaN, a str, a bool or a Decimal on a running job raises InvalidRequest
    naming it; no NaN deadline reaches the supervisor's timers, which go on ringing for later
    waits and jobs."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        held = await sup.submit("fake.gate", {"key": "held"})
        await gates.wait_entered("held")
        refused: tuple[Any, ...] = (float("nan"), "5", True, Decimal("1.5"))
        for timeout in refused:
            with pytest.raises(errors.InvalidRequest) as caught:
                await sup.wait(held.id, timeout=timeout)
            assert str(caught.value) == (
                f"timeout must be a number of seconds (or None), not {timeout!r}"
            )
        with pytest.raises(TimeoutError):
            await sup.wait(held.id, timeout=0.01)
        with pytest.raises(TimeoutError):
            await sup.wait(held.id, timeout=0.01)
        gates.open("held")
        done = await sup.wait(held.id, timeout=10)
    assert done.state is JobState.SUCCEEDED


async def test_a_wait_longer_than_any_float_waits_with_no_limit() -> None:
    """wait() and run() with an int timeout too large for a float (10**400) wait as with an
    infinite one, where they raised OverflowError; run() refuses a bad timeout before it
    submits anything."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        held = await sup.submit("fake.gate", {"key": "held"})
        results: list[Any] = []

        async def wait_then_run() -> None:
            results.append(await sup.wait(held.id, timeout=10**400))
            results.append(await sup.run("fake.gate", {"key": "held"}, timeout=10**400))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_then_run)
            await gates.wait_entered("held")
            await anyio.wait_all_tasks_blocked()
            assert results == []
            gates.open("held")
        with pytest.raises(errors.InvalidRequest, match="timeout must be a number of seconds"):
            await sup.run("fake.gate", {"key": "held"}, timeout="5")  # type: ignore[arg-type]
        listed = await sup.list_jobs()
    assert results[0].state is JobState.SUCCEEDED
    assert results[1] == {"text": "held"}
    assert len(listed.jobs) == 2


async def test_get_and_wait_unknown_or_foreign_jobs() -> None:
    """Another owner's job and a missing job are both JobNotFound."""
    async with Supervisor(plugins=[builtin]) as sup:
        rec = await sup.submit("builtin.echo", {"text": "x"}, owner="alice")
        with pytest.raises(errors.JobNotFound):
            await sup.get(rec.id, owner="bob")
        with pytest.raises(errors.JobNotFound):
            await sup.wait("missing")
        with pytest.raises(errors.JobNotFound):
            await sup.cancel(rec.id, owner="bob")
        assert (await sup.wait(rec.id, timeout=5, owner="alice")).owner == "alice"


async def test_waiting_on_another_owners_running_job_is_job_not_found() -> None:
    """A wait by another owner on a job still running is JobNotFound at once, not a wait."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.gate", {"key": "mine"}, owner="alice")
        await gates.wait_entered("mine")
        with pytest.raises(errors.JobNotFound):
            await sup.wait(rec.id, owner="bob")
        gates.open("mine")
        assert (await sup.wait(rec.id, timeout=5, owner="alice")).state is JobState.SUCCEEDED


async def test_wait_times_out() -> None:
    """wait() raises TimeoutError when the job does not finish in time, leaving it running."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.gate", {"key": "w"})
        await gates.wait_entered("w")
        with pytest.raises(TimeoutError):
            await sup.wait(rec.id, timeout=0.01)
        assert (await sup.get(rec.id)).state is JobState.RUNNING
        gates.open("w")
        assert (await sup.wait(rec.id, timeout=5)).state is JobState.SUCCEEDED


async def test_a_timed_out_wait_leaves_other_waiters_waiting() -> None:
    """One waiter's timeout wakes the job's shared event, yet the others wait on until the end."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.gate", {"key": "s"})
        await gates.wait_entered("s")
        results: list[JobRecord] = []

        async def wait_long(seconds: float | None) -> None:
            results.append(await sup.wait(rec.id, timeout=seconds))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_long, None)
            tg.start_soon(wait_long, 60.0)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(TimeoutError):
                await sup.wait(rec.id, timeout=0.01)
            await anyio.wait_all_tasks_blocked()
            assert results == []
            gates.open("s")
        assert [r.state for r in results] == [JobState.SUCCEEDED, JobState.SUCCEEDED]


async def test_wait_with_no_time_left_times_out_at_once() -> None:
    """A zero timeout on an unfinished job raises TimeoutError without waiting."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.gate", {"key": "z"})
        with pytest.raises(TimeoutError):
            await sup.wait(rec.id, timeout=0)
        gates.open("z")
        assert (await sup.wait(rec.id, timeout=float("inf"))).state is JobState.SUCCEEDED


async def test_idempotency_key_returns_the_same_job() -> None:
    """The same owner and idempotency key give back the first job instead of a new one."""
    async with Supervisor(plugins=[builtin]) as sup:
        first = await sup.submit("builtin.echo", {"text": "x"}, idempotency_key="k", owner="a")
        again = await sup.submit("builtin.echo", {"text": "y"}, idempotency_key="k", owner="a")
        other = await sup.submit("builtin.echo", {"text": "y"}, idempotency_key="k", owner="b")
        assert again.id == first.id
        assert other.id != first.id
        assert len((await sup.list_jobs()).jobs) == 2


async def test_struct_input_is_stored_as_builtins() -> None:
    """An input given as a Struct is validated and stored as JSON-ready builtins."""
    from jobwarden.plugins.builtin import EchoIn

    async with Supervisor(plugins=[builtin]) as sup:
        rec = await sup.submit("builtin.echo", EchoIn(text="s"))
        assert rec.input == {"text": "s"}
        assert (await sup.wait(rec.id, timeout=5)).result == {"text": "s"}


async def test_records_are_immutable_snapshots() -> None:
    """The record submit returned stays queued while the job moves on."""
    async with Supervisor(plugins=[builtin]) as sup:
        rec: JobRecord = await sup.submit("builtin.echo", {"text": "x"})
        await sup.wait(rec.id, timeout=5)
        assert rec.state is JobState.QUEUED


async def test_tools_may_open_their_own_cancel_scopes() -> None:
    """A tool's own move_on_after / fail_after (and trio.sleep's scope) nest inside the job's."""
    async with Supervisor(plugins=[scoped_plugin(), builtin]) as sup:
        for tool, payload in (
            ("scoped.nested", {"seconds": 0.01}),
            ("builtin.sleep", {"seconds": 0}),
        ):
            done = await sup.wait((await sup.submit(tool, payload)).id, timeout=5)
            assert done.state is JobState.SUCCEEDED, done.error


async def test_a_cancel_landing_after_the_tool_returned_touches_no_other_job() -> None:
    """A cancel that arrives while a finished call is being recorded leaves the next job alone."""
    store = PausingStore()
    async with Supervisor(plugins=[builtin], store=store, concurrency=1) as sup:
        first = await sup.submit("builtin.echo", {"text": "first"})
        store.job_id = first.id
        second = await sup.submit("builtin.sleep", {"seconds": 0.01})
        await store.paused.wait()
        async with anyio.create_task_group() as tg:
            refused: list[BaseException] = []

            async def cancel_first() -> None:
                try:
                    await sup.cancel(first.id)
                except errors.JobFinished as exc:
                    refused.append(exc)

            tg.start_soon(cancel_first)
            await anyio.wait_all_tasks_blocked()
            store.release()
        assert len(refused) == 1
        assert (await sup.wait(first.id, timeout=5)).state is JobState.SUCCEEDED
        assert (await sup.wait(second.id, timeout=5)).state is JobState.SUCCEEDED
