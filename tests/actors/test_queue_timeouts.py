"""Queue timeouts count from when an attempt was queued: the submit for the first attempt, the
re-queue (after its backoff) for a retry, and both still across a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobwarden import JobState, MemoryStore, Plugin, Supervisor, ToolContext
from jobwarden.actors import job_actor
from jobwarden.actors.loop_calls import current_time
from jobwarden.actors.recovery import Recovered
from jobwarden.errors import OutcomeType
from jobwarden.ids import new_job_id
from jobwarden.plugins.retry import RetryPolicy
from jobwarden.records import JobRecord
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import Gates, KeyIn, TextOut, outlive, patient_plugin
from tests.store.conformance import Jobs

pytestmark = pytest.mark.anyio

LONG_AGO = timedelta(hours=1)


def queued_note(
    key: str, created_at: datetime, *, attempt: int = 1, retry_at: datetime | None = None
) -> JobRecord:
    """A ``patient.note`` job as a stopped server left it: queued, ``attempt`` of it."""
    return JobRecord(
        id=new_job_id(),
        tool="patient.note",
        plugin="patient",
        state=JobState.QUEUED,
        input={"key": key},
        created_at=created_at,
        attempt=attempt,
        retry_at=retry_at,
    )


async def stored(path: Path, *records: JobRecord) -> None:
    """A store file holding ``records``, each with its first event."""
    store = SqliteStore(path)
    await store.open()
    jobs = Jobs()
    for record in records:
        await store.put(record, jobs.event(record))
    await store.close()


async def test_jobs_whose_window_passed_before_a_restart_end_as_timeout_at_recovery(
    tmp_path: Path,
) -> None:
    """After a restart, a queued job past its queue timeout (counted from its submit, or for a
    retry from its re-queue) ends cancelled as timeout without running, and recovery counts it as
    expired rather than requeued; the others run."""
    path = tmp_path / "jobs.db"
    now = datetime.now(UTC)
    stale, fresh, stale_retry, fresh_retry, older_retry = [
        queued_note("stale", now - LONG_AGO),
        queued_note("fresh", now),
        queued_note("stale-retry", now - LONG_AGO, attempt=2, retry_at=now - LONG_AGO),
        queued_note("fresh-retry", now - LONG_AGO, attempt=2, retry_at=now),
        # Stored before records noted retry_at: the re-queue time is unknown, the window opens now.
        queued_note("older-retry", now - LONG_AGO, attempt=2),
    ]
    await stored(path, stale, fresh, stale_retry, fresh_retry, older_retry)
    calls: list[str] = []
    async with Supervisor(
        plugins=[patient_plugin(30.0, calls, Gates())], store=SqliteStore(path)
    ) as sup:
        assert sup.recovered == Recovered(requeued=3, expired=2)
        finals = {
            r.input["key"]: await sup.wait(r.id, timeout=10)
            for r in (stale, fresh, stale_retry, fresh_retry, older_retry)
        }
    assert sorted(calls) == ["fresh#1", "fresh-retry#2", "older-retry#2"]
    for key in ("fresh", "fresh-retry", "older-retry"):
        assert finals[key].state is JobState.SUCCEEDED
    for key in ("stale", "stale-retry"):
        expired = finals[key]
        assert (expired.state, expired.started_at) == (JobState.CANCELLED, None)
        assert expired.error is not None
        assert expired.error.type == OutcomeType.TIMEOUT
        assert expired.error.message == "patient.note waited more than 30s to start"


async def test_a_retry_gets_its_queue_timeout_from_when_it_was_queued_again() -> None:
    """A retry's queue window opens when it is due again (re-queued, after its backoff), not at
    the submit: attempt 2 runs though both lie further back than the timeout."""
    window, backoff = 0.4, 0.6
    gates = Gates()
    calls: list[str] = []
    async with Supervisor(plugins=[patient_plugin(window, calls, gates, backoff_s=backoff)]) as sup:
        record = await sup.submit("patient.second_try", {"key": "a"})
        await gates.wait_entered("a")
        await outlive(record.created_at, window)
        failed_at = datetime.now(UTC)
        gates.open("a")
        done = await sup.wait(record.id, timeout=10)
    assert calls == ["a#1", "a#2"]
    assert (done.state, done.attempt) == (JobState.SUCCEEDED, 2)
    assert done.retry_at is not None
    assert done.retry_at >= failed_at + timedelta(seconds=backoff)


async def test_a_retry_still_in_its_backoff_at_a_restart_waits_for_the_rest_of_it(
    tmp_path: Path,
) -> None:
    """A queued retry whose retry_at lies ahead when the server starts again runs no earlier
    than then (one due in a minute is still queued once the others ran); a retry already due
    and a first attempt run at once."""
    path = tmp_path / "jobs.db"
    now = datetime.now(UTC)
    later = queued_note("later", now, attempt=2, retry_at=now + timedelta(seconds=60))
    soon = queued_note("soon", now, attempt=2, retry_at=now + timedelta(seconds=0.3))
    due = queued_note("due", now, attempt=2, retry_at=now - timedelta(seconds=1))
    first = queued_note("first", now)
    await stored(path, later, soon, due, first)
    calls: list[str] = []
    async with Supervisor(
        plugins=[patient_plugin(60.0, calls, Gates())], store=SqliteStore(path)
    ) as sup:
        assert sup.recovered == Recovered(requeued=4)
        finals = {r.input["key"]: await sup.wait(r.id, timeout=10) for r in (soon, due, first)}
        still = await sup.get(later.id)
    assert sorted(calls) == ["due#2", "first#1", "soon#2"]
    assert all(final.state is JobState.SUCCEEDED for final in finals.values())
    started = finals["soon"].started_at
    assert started is not None
    assert soon.retry_at is not None
    assert started >= soon.retry_at
    assert still.state is JobState.QUEUED


@pytest.mark.parametrize("durable", [False, True])
async def test_a_job_taken_after_its_window_closed_ends_as_timeout_unrun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool
) -> None:
    """A runner that takes a job whose queue window closed before the window's timer fired (the
    job actor's clock says so at start) ends it cancelled as timeout, never calling the tool."""
    calls: list[str] = []
    store = SqliteStore(tmp_path / "jobs.db") if durable else MemoryStore()
    monkeypatch.setattr(job_actor, "current_time", lambda: current_time() + 3600)
    plugin = patient_plugin(30.0, calls, Gates())
    async with Supervisor(plugins=[plugin], store=store) as sup:
        record = await sup.submit("patient.note", {"key": "late"})
        done = await sup.wait(record.id, timeout=10)
    assert calls == []
    assert done.state is JobState.CANCELLED
    assert done.error is not None
    assert done.error.type == OutcomeType.TIMEOUT
    assert done.error.message == "patient.note waited more than 30s to start"
    assert done.started_at is None


def bounded_plugin(
    gates: Gates, calls: list[str], *, queue_timeout: float | None, total_timeout: float
) -> Plugin:
    """A plugin named ``bounded``: ``busy`` holds a runner at gate ``key``; ``note`` and
    ``twice`` (attempt 1 waits at gate ``key`` and fails) have the given limits."""
    plugin = Plugin("bounded", version="0.1.0")

    @plugin.tool()
    async def busy(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Hold the runner until gate ``key`` opens."""
        await gates.pass_through(inp.key)
        return TextOut(text=inp.key)

    @plugin.tool(queue_timeout=queue_timeout, total_timeout=total_timeout)
    async def note(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Note the call."""
        calls.append(f"{inp.key}#{ctx.attempt}")
        return TextOut(text=inp.key)

    retry = RetryPolicy(max_attempts=2, backoff_s=0, jitter=0)

    @plugin.tool(queue_timeout=queue_timeout, total_timeout=total_timeout, retry=retry)
    async def twice(inp: KeyIn, ctx: ToolContext) -> TextOut:
        """Note the call; attempt 1 waits at gate ``key``, then fails."""
        calls.append(f"{inp.key}#{ctx.attempt}")
        if ctx.attempt == 1:
            await gates.pass_through(inp.key)
            raise RuntimeError("the first attempt fails")
        return TextOut(text=inp.key)

    return plugin


@pytest.mark.parametrize(
    ("queue_timeout", "total_timeout", "message"),
    [
        (None, 0.2, "bounded.note did not finish within its total timeout of 0.2s"),
        (60.0, 0.2, "bounded.note did not finish within its total timeout of 0.2s"),
        (0.2, 60.0, "bounded.note waited more than 0.2s to start"),
    ],
    ids=["total", "total-first", "queue-first"],
)
async def test_a_job_still_queued_ends_when_its_first_limit_runs_out(
    queue_timeout: float | None, total_timeout: float, message: str
) -> None:
    """A job queued behind a busy runner ends cancelled as timeout when the earlier of its queue
    timeout and its total timeout runs out, with that limit's message, without waiting for a
    runner."""
    gates = Gates()
    calls: list[str] = []
    plugin = bounded_plugin(gates, calls, queue_timeout=queue_timeout, total_timeout=total_timeout)
    async with Supervisor(plugins=[plugin], concurrency=1) as sup:
        await sup.submit("bounded.busy", {"key": "busy"})
        await gates.wait_entered("busy")
        record = await sup.submit("bounded.note", {"key": "late"})
        done = await sup.wait(record.id, timeout=10)
        gates.open("busy")
    assert calls == []
    assert (done.state, done.started_at) == (JobState.CANCELLED, None)
    assert done.error is not None
    assert done.error.type == OutcomeType.TIMEOUT
    assert done.error.message == message


async def test_a_retry_still_queued_ends_when_the_total_timeout_runs_out() -> None:
    """A retry queued behind a busy runner ends cancelled as timeout once the job's total timeout
    (counted from the submit) runs out, without waiting for a runner."""
    gates = Gates()
    calls: list[str] = []
    plugin = bounded_plugin(gates, calls, queue_timeout=None, total_timeout=0.5)
    async with Supervisor(plugins=[plugin], concurrency=1) as sup:
        record = await sup.submit("bounded.twice", {"key": "first"})
        await gates.wait_entered("first")
        await sup.submit("bounded.busy", {"key": "busy"})
        gates.open("first")
        await gates.wait_entered("busy")
        done = await sup.wait(record.id, timeout=10)
        gates.open("busy")
    assert calls == ["first#1"]
    assert (done.state, done.attempt) == (JobState.CANCELLED, 2)
    assert done.error is not None
    assert done.error.type == OutcomeType.TIMEOUT
    assert done.error.message == "bounded.twice did not finish within its total timeout of 0.5s"
