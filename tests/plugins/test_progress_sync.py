"""ctx.progress_sync: a plain def's progress, in thread and process mode, as events and records."""

from __future__ import annotations

import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

import anyio
import pytest
from structlog.testing import capture_logs

from jobwarden import JobEvent, JobState, Plugin, RetryPolicy, Supervisor, ToolContext
from jobwarden.errors import OutcomeType
from tests.process_fakes import NumberIn, NumberOut, procs

pytestmark = pytest.mark.anyio

HANG_GUARD_S = 60  # generous: only turns a hang into a failure

stepping = Plugin("stepping", version="1.0.0")


@stepping.tool(mode="thread", timeout=30)
def in_a_thread(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Report n steps of progress from a worker thread, then return n."""
    for step in range(1, inp.n + 1):
        ctx.progress_sync(step / inp.n, f"step {step} of {inp.n}")
    return NumberOut(n=inp.n)


@stepping.tool(mode="thread", timeout=30)
def from_its_own_threads(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Report n steps of progress from threads of a pool the tool starts itself, then return n."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        for step in range(1, inp.n + 1):
            pool.submit(ctx.progress_sync, step / inp.n, f"step {step} of {inp.n}").result()
    return NumberOut(n=inp.n)


class LeftRunning:
    """A thread attempt 1 leaves running, released by attempt 2 to report and log into it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.reported = threading.Event()
        # Set only once progress_sync has returned: an exception in this thread would otherwise
        # look the same as a report dropped quietly.
        self.returned = False

    def report_late(self, ctx: ToolContext) -> None:
        self.release.wait()
        try:
            ctx.log.info("late line")
            ctx.progress_sync(0.99, f"late report from attempt {ctx.attempt}")
            self.returned = True
        finally:
            self.reported.set()


left_by_job: defaultdict[str, LeftRunning] = defaultdict(LeftRunning)


@stepping.tool(mode="thread", timeout=30, retry=RetryPolicy(max_attempts=2, backoff_s=0))
def leaves_a_thread(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Attempt 1 starts a thread that outlives it and fails; attempt 2 lets that thread report
    progress once it is running, waits until it has, then reports its own and returns."""
    left = left_by_job[ctx.job_id]
    if ctx.attempt == 1:
        threading.Thread(target=left.report_late, args=(ctx,), daemon=True).start()
        raise RuntimeError("attempt 1 fails, its thread runs on")
    left.release.set()
    left.reported.wait()
    ctx.progress_sync(0.5, "attempt 2")
    return NumberOut(n=inp.n)


@stepping.tool(timeout=30)
async def on_the_loop(inp: NumberIn, ctx: ToolContext) -> NumberOut:
    """Call progress_sync from an async tool, which should await progress instead."""
    ctx.progress_sync(0.5)
    return NumberOut(n=inp.n)


async def steps_seen(sup: Supervisor, tool: str, n: int) -> tuple[list[JobEvent], float | None]:
    """Run ``tool`` with ``n`` and return its events and the progress its record ends with."""
    record = await sup.submit(tool, {"n": n})
    seen: list[JobEvent] = []
    async with sup.subscribe(job_id=record.id, since=0) as events:
        async for event in events:
            assert isinstance(event, JobEvent)
            seen.append(event)
    done = await sup.wait(record.id, timeout=HANG_GUARD_S)
    assert done.state is JobState.SUCCEEDED
    assert done.result == {"n": n}
    return seen, done.progress


@pytest.mark.parametrize(
    "tool", ["stepping.in_a_thread", "stepping.from_its_own_threads", "procs.steps"]
)
async def test_a_plain_def_s_progress_becomes_progress_events_in_order(tool: str) -> None:
    """Each progress_sync of a thread- or process-mode tool (in a thread tool, also from threads
    the tool starts itself) is one progress event, in order and before the outcome, and the
    record keeps the last fraction."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[stepping, procs]) as sup:
            seen, progress = await steps_seen(sup, tool, 3)
    kinds = [event.type.rpartition(".")[2] for event in seen]
    assert kinds == ["queued", "running", "progress", "progress", "progress", "succeeded"]
    reported = [(e.data.progress, e.data.message) for e in seen if e.type.endswith("progress")]
    assert reported == [(1 / 3, "step 1 of 3"), (2 / 3, "step 2 of 3"), (1.0, "step 3 of 3")]
    assert progress == 1.0


async def test_a_thread_left_by_an_earlier_attempt_does_not_report_into_the_retry() -> None:
    """Progress from a thread an ended attempt left running is dropped while the retry runs, its
    progress_sync returning normally, and that thread's ctx.log lines name its own attempt."""
    with anyio.fail_after(HANG_GUARD_S), capture_logs() as logs:
        async with Supervisor(plugins=[stepping]) as sup:
            seen, progress = await steps_seen(sup, "stepping.leaves_a_thread", 1)
    reports = [(e.data.attempt, e.data.progress) for e in seen if e.type.endswith("progress")]
    assert reports == [(2, 0.5)]
    assert progress == 0.5
    assert left_by_job[seen[0].data.job_id].returned
    late = [line for line in logs if line["event"] == "late line"]
    assert [line["attempt"] for line in late] == [1]


async def test_progress_sync_in_an_async_tool_fails_the_job_saying_to_await_progress() -> None:
    """On the event loop progress_sync cannot hand the report over: the tool raises, and the
    job fails with plugin_error naming what to use."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[stepping]) as sup:
            record = await sup.submit("stepping.on_the_loop", {"n": 1})
            done = await sup.wait(record.id, timeout=HANG_GUARD_S)
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == OutcomeType.PLUGIN_ERROR
    assert done.error.message == (
        "RuntimeError: progress_sync is for thread- and process-mode tools; an async tool"
        " awaits ctx.progress(...)"
    )


def test_a_bad_fraction_is_refused_before_anything_is_sent() -> None:
    """progress_sync checks its fraction as progress does, in any mode."""
    sent: list[tuple[float, str | None]] = []

    async def never(fraction: float, message: str | None) -> None:
        raise AssertionError("not reached")

    ctx = ToolContext(
        job_id="j",
        tool="t.t",
        attempt=1,
        progress=never,
        progress_sync=lambda fraction, message: sent.append((fraction, message)),
    )
    for bad in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="progress must be"):
            ctx.progress_sync(bad)  # type: ignore[arg-type]
    ctx.progress_sync(1, "done")
    assert sent == [(1.0, "done")]
    assert type(sent[0][0]) is float
