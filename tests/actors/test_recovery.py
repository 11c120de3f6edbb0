"""Recovery at start: a durable store's unfinished jobs become live again, by the rule."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.actors.recovery import INTERRUPTED, Recovered
from jobwarden.errors import OutcomeType
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.memory import MemoryStore
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import CheckedIn, KeyIn, TextOut
from tests.store.conformance import Jobs

pytestmark = pytest.mark.anyio


def demo_plugin(ran: list[str], gate: anyio.Event) -> Plugin:
    """``demo.step`` (one at a time, waits for ``gate``) and ``demo.again`` (safe to repeat)."""
    plugin = Plugin("demo", version="1.0.0")

    @plugin.tool(max_concurrency=1)
    async def step(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Wait for the gate, then note the key."""
        await gate.wait()
        ran.append(inp.key)
        return TextOut(text=inp.key)

    @plugin.tool(retry_on_interrupt=True)
    async def again(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Note the key and the attempt."""
        ran.append(f"{inp.key}#{ctx.attempt}")
        return TextOut(text=inp.key)

    return plugin


def opened_gate() -> anyio.Event:
    gate = anyio.Event()
    gate.set()
    return gate


async def wait_running(sup: Supervisor, job_id: str) -> None:
    async with sup.subscribe(job_id=job_id, state=JobState.RUNNING) as events:
        async for _ in events:
            return


async def all_events(sup: Supervisor, job_id: str) -> list[JobEvent]:
    async with sup.subscribe(job_id=job_id) as events:
        return [e async for e in events if isinstance(e, JobEvent)]


async def crashed_file(path: Path, *records: tuple[str, object, JobState]) -> list[JobRecord]:
    """A store file as a killed server leaves it: each (tool, key, state) queued or running."""
    store = SqliteStore(path)
    await store.open()
    jobs = Jobs()
    made = []
    for tool, key, state in records:
        record = await jobs.put(store, tool=tool, input={"key": key})
        if state is JobState.RUNNING:
            record = await jobs.move(store, record, state=JobState.RUNNING)
        made.append(record)
    await store.close()
    return made


async def test_queued_jobs_run_again_in_their_original_order(tmp_path: Path) -> None:
    """Jobs still queued when a supervisor stopped are queued again, in order, by the next one."""
    path = tmp_path / "jobs.db"
    first_ran: list[str] = []
    async with Supervisor(
        plugins=[demo_plugin(first_ran, anyio.Event())],
        store=SqliteStore(path),
        shutdown_grace_s=0,
    ) as sup:
        blocker = await sup.submit("demo.step", {"key": "a"})
        await wait_running(sup, blocker.id)
        queued = [(await sup.submit("demo.step", {"key": k})).id for k in "bcd"]
    assert first_ran == []

    ran: list[str] = []
    async with Supervisor(
        plugins=[demo_plugin(ran, opened_gate())], store=SqliteStore(path)
    ) as sup:
        assert sup.recovered == Recovered(requeued=3)
        finals = [await sup.wait(job_id) for job_id in queued]
        cancelled = await sup.get(blocker.id)
    assert ran == ["b", "c", "d"]
    assert [r.state for r in finals] == [JobState.SUCCEEDED] * 3
    assert cancelled.state is JobState.CANCELLED


async def test_a_job_cut_off_while_running_fails_as_interrupted(tmp_path: Path) -> None:
    """A job the file says was running is failed with type interrupted, one new event."""
    path = tmp_path / "jobs.db"
    [running] = await crashed_file(path, ("demo.step", "x", JobState.RUNNING))
    async with Supervisor(plugins=[demo_plugin([], opened_gate())], store=SqliteStore(path)) as sup:
        assert sup.recovered == Recovered(interrupted=1)
        record = await sup.get(running.id)
        events = await all_events(sup, running.id)
    assert record.state is JobState.FAILED
    assert record.error is not None
    assert record.error.type == OutcomeType.INTERRUPTED
    assert record.error.message == INTERRUPTED
    assert record.finished_at is not None
    assert [e.offset for e in events] == [1, 2, 3]
    assert events[-1].type == "jobwarden.job.failed"


async def test_a_repeatable_tool_is_retried_as_a_new_attempt(tmp_path: Path) -> None:
    """With retry_on_interrupt, a job found running is queued again with attempt 2 and runs."""
    path = tmp_path / "jobs.db"
    [running] = await crashed_file(path, ("demo.again", "y", JobState.RUNNING))
    ran: list[str] = []
    async with Supervisor(
        plugins=[demo_plugin(ran, opened_gate())], store=SqliteStore(path)
    ) as sup:
        assert sup.recovered == Recovered(retried=1)
        done = await sup.wait(running.id)
        events = await all_events(sup, running.id)
    assert ran == ["y#2"]
    assert (done.state, done.attempt) == (JobState.SUCCEEDED, 2)
    kinds = [e.type.rsplit(".", 1)[1] for e in events]
    assert kinds == ["queued", "running", "retrying", "running", "succeeded"]
    assert [e.data.attempt for e in events] == [1, 1, 2, 2, 2]


async def test_jobs_that_cannot_run_any_more_are_cancelled_with_the_reason(
    tmp_path: Path,
) -> None:
    """A recovered job whose tool is gone, or whose input no longer fits, is cancelled."""
    path = tmp_path / "jobs.db"
    gone, misfit = await crashed_file(
        path, ("ghost.tool", "g", JobState.QUEUED), ("demo.step", 5, JobState.RUNNING)
    )
    async with Supervisor(plugins=[demo_plugin([], opened_gate())], store=SqliteStore(path)) as sup:
        assert sup.recovered == Recovered(abandoned=2)
        records = [await sup.get(r.id) for r in (gone, misfit)]
    for record in records:
        assert record.state is JobState.CANCELLED
        assert record.error is not None
        assert record.error.type == OutcomeType.INTERRUPTED
        assert "cannot run after the restart" in record.error.message
    assert "ghost.tool" in records[0].error.message  # type: ignore[union-attr]


async def test_a_job_whose_total_timeout_passed_while_down_ends_without_running(
    tmp_path: Path,
) -> None:
    """A queued job recovered after its tool's total timeout ran out (counted from its submit,
    across the restart) is cancelled with error type timeout instead of being run."""
    path = tmp_path / "jobs.db"
    ran: list[str] = []
    plugin = Plugin("budget", version="1.0.0")

    @plugin.tool(total_timeout=60)
    async def step(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Note the key."""
        ran.append(inp.key)
        return TextOut(text=inp.key)

    (late,) = await crashed_file(path, ("budget.step", "late", JobState.QUEUED))
    async with Supervisor(plugins=[plugin], store=SqliteStore(path)) as sup:
        assert sup.recovered == Recovered(expired=1)
        ended = await sup.wait(late.id, timeout=10)
        kinds = [e.type.rsplit(".", 1)[1] for e in await all_events(sup, late.id)]
    assert ran == []
    assert ended.state is JobState.CANCELLED
    assert ended.error is not None
    assert ended.error.type == OutcomeType.TIMEOUT
    assert "did not finish within its total timeout of 60" in ended.error.message
    assert kinds == ["queued", "cancelled"]


async def test_a_job_whose_input_check_now_raises_is_cancelled_not_the_start(
    tmp_path: Path,
) -> None:
    """A queued job whose input the tool's own check (a __post_init__ that raises) now refuses
    is cancelled with the reason at recovery; the supervisor starts and runs the others."""
    path = tmp_path / "jobs.db"
    poisoned, fine = await crashed_file(
        path, ("checked.run", "crash", JobState.QUEUED), ("checked.run", "ok", JobState.QUEUED)
    )
    plugin = Plugin("checked", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def run(inp: CheckedIn, ctx: ToolContext) -> TextOut:
        """Echo the key."""
        return TextOut(text=inp.key)

    async with Supervisor(plugins=[plugin], store=SqliteStore(path)) as sup:
        assert sup.recovered == Recovered(requeued=1, abandoned=1)
        assert (await sup.wait(fine.id, timeout=10)).state is JobState.SUCCEEDED
        record = await sup.get(poisoned.id)
    assert record.state is JobState.CANCELLED
    assert record.error is not None
    assert "input check raised RuntimeError: the check itself is broken" in record.error.message


async def test_offsets_continue_and_a_resumer_gets_exactly_what_it_missed(
    tmp_path: Path,
) -> None:
    """After a restart, new events continue the offsets, and since=<last seen> replays the rest."""
    path = tmp_path / "jobs.db"
    await crashed_file(
        path, ("demo.step", "q", JobState.QUEUED), ("demo.step", "r", JobState.RUNNING)
    )  # offsets 1, 2, 3
    async with Supervisor(plugins=[demo_plugin([], opened_gate())], store=SqliteStore(path)) as sup:
        fresh = await sup.run("demo.step", {"key": "new"})
        assert fresh == {"text": "new"}
        async with sup.subscribe(since=2) as events:
            replayed = []
            async for event in events:
                replayed.append(event)
                if event.offset == (await sup.store.event_bounds()).last:
                    break
    got = [e.offset for e in replayed]
    assert got == list(range(3, got[-1] + 1))
    assert got[-1] >= 3 + 3 + 3  # r failed; q ran (2 events); the new job (3 events)


async def test_a_memory_store_recovers_nothing() -> None:
    """With the non-durable memory store there is nothing to recover."""
    async with Supervisor(plugins=[demo_plugin([], opened_gate())], store=MemoryStore()) as sup:
        assert sup.recovered == Recovered()
