"""Write-behind outcomes on the SQLite store: a runner does not wait for its job's terminal commit,
yet nothing about the job's end is visible before that commit lands, and a lost one stops the
supervisor."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec
import pytest
from structlog.testing import capture_logs

from jobwarden import JobState, Plugin, Supervisor, ToolContext
from jobwarden.errors import (
    JobFinished,
    OutcomeType,
    StoreError,
    StoreUnavailable,
    SupervisorCrashed,
)
from jobwarden.records import EVENT_TYPE_PREFIX, JobEvent, JobRecord
from jobwarden.store.base import JobQuery
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import Gates, fake_plugin

pytestmark = pytest.mark.anyio


ENDS = {"succeeded", "failed", "timed_out", "cancelled"}


class HeldStore(SqliteStore):
    """A SQLite store whose writer process is stopped (SIGSTOP) as a job's move to one of
    ``states`` is queued, so that commit (and any after it) waits until ``release()``."""

    def __init__(self, path: Path, states: set[str] = ENDS) -> None:
        super().__init__(path)
        self.states = states
        self.holding = threading.Event()

    def _hold(self, record: JobRecord) -> None:
        if record.state.value in self.states and not self.holding.is_set():
            pid = self._commits.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            self.holding.set()

    def release(self) -> None:
        """Let the writer process commit again."""
        pid = self._commits.pid
        assert pid is not None
        os.kill(pid, signal.SIGCONT)

    async def put(self, record: JobRecord, event: JobEvent) -> JobRecord:
        self._hold(record)
        return await super().put(record, event)

    async def transition(self, record: JobRecord, event: JobEvent) -> None:
        self._hold(record)
        await super().transition(record, event)

    def transition_soon(
        self, record: JobRecord, event: JobEvent, committed: Callable[[StoreError | None], None]
    ) -> None:
        self._hold(record)
        super().transition_soon(record, event, committed)

    def put_then(
        self, record: JobRecord, event: JobEvent, committed: Callable[[StoreError | None], None]
    ) -> Coroutine[Any, Any, JobRecord | None]:
        self._hold(record)
        return super().put_then(record, event, committed)


class FullAt(SqliteStore):
    """A SQLite store whose disk fills up exactly when a job moves to one of ``states``: a
    trigger in the file refuses the event of that move with SQLite's message (the event, not
    the job's row, which a later move in the same transaction would replace)."""

    def __init__(self, path: Path, states: set[str] = ENDS) -> None:
        super().__init__(path)
        self.states = states

    async def open(self) -> None:
        await super().open()
        types = " OR ".join(
            f'instr(CAST(NEW.body AS TEXT), \'"type":"{EVENT_TYPE_PREFIX}{state}"\') > 0'
            for state in sorted(self.states)
        )
        with sqlite3.connect(self.path) as db:
            db.execute(
                f"CREATE TRIGGER full BEFORE INSERT ON events WHEN {types}"
                " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )


class RefusingAt(SqliteStore):
    """A SQLite store that refuses, at once, to queue a job's move to one of ``states``, as
    ``transition_soon`` does once the writer process is known to be gone."""

    def __init__(self, path: Path, states: set[str]) -> None:
        super().__init__(path)
        self.states = states

    def transition_soon(
        self, record: JobRecord, event: JobEvent, committed: Callable[[StoreError | None], None]
    ) -> None:
        if record.state.value in self.states:
            raise StoreError(f"the writer process of the job store {self.path} was killed")
        super().transition_soon(record, event, committed)


class TextIn(msgspec.Struct):
    text: str


def _leaky_plugin(contexts: list[ToolContext]) -> Plugin:
    plugin = Plugin("leaky", version="1.0.0")

    @plugin.tool(timeout=5.0)
    async def keep(inp: TextIn, ctx: ToolContext) -> TextIn:
        """Return at once, keeping the context (as a tool leaking it to a late callback would)."""
        contexts.append(ctx)
        return inp

    @plugin.tool(timeout=5.0, retry_on_interrupt=True)
    async def again(inp: TextIn, ctx: ToolContext) -> TextIn:
        """The same, from a tool that is safe to run again after a crash."""
        contexts.append(ctx)
        return inp

    return plugin


async def test_a_jobs_end_is_seen_only_once_committed(tmp_path: Path) -> None:
    """While the terminal commit is held the job reads as running, its succeeded event and
    waiters wait, and a late progress report or cancel cannot change the outcome."""
    store = HeldStore(tmp_path / "jobs.db")
    contexts: list[ToolContext] = []
    async with Supervisor(plugins=[_leaky_plugin(contexts)], store=store) as sup:
        record = await sup.submit("leaky.keep", {"text": "hi"})
        async with sup.subscribe(job_id=record.id) as events:
            await anyio.to_thread.run_sync(store.holding.wait)
            assert (await sup.get(record.id)).state is JobState.RUNNING
            await contexts[0].progress(0.9, "late")
            outcome: list[BaseException] = []

            async def cancel() -> None:
                try:
                    await sup.cancel(record.id)
                except JobFinished as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel)
                await anyio.wait_all_tasks_blocked()
                assert outcome == []
                store.release()
            final = await sup.wait(record.id)
            kinds = [event.type.rsplit(".", 1)[1] async for event in events]
    assert final.state is JobState.SUCCEEDED
    assert (final.result, final.progress) == ({"text": "hi"}, None)
    assert kinds == ["queued", "running", "succeeded"]
    assert "finished succeeded first" in str(outcome[0])


async def test_a_lost_write_behind_outcome_stops_the_supervisor(tmp_path: Path) -> None:
    """A terminal commit that fails stops the supervisor with SupervisorCrashed, as an awaited
    one does."""
    store = FullAt(tmp_path / "jobs.db", {"succeeded"})
    contexts: list[ToolContext] = []
    with pytest.raises(SupervisorCrashed, match=r"the job store failed: .*disk is full") as info:
        async with Supervisor(
            plugins=[_leaky_plugin(contexts)], store=store, max_restarts=100
        ) as sup:
            record = await sup.submit("leaky.keep", {"text": "never recorded"})
            with anyio.fail_after(10):
                await sup.wait(record.id)
    assert isinstance(info.value.__cause__, StoreError)


async def test_jobs_running_when_an_outcome_is_lost_are_left_for_the_next_start(
    tmp_path: Path,
) -> None:
    """When the file refuses a job's outcome, that job and every other job still running stay
    running in the file, not cancelled, and the next start ends them interrupted: before, the
    stop wrote a cancel over each (a small write that could fit where the outcome did not)."""
    gates = Gates()
    path = tmp_path / "jobs.db"
    plugins = [fake_plugin(gates), _leaky_plugin([])]
    with pytest.raises(SupervisorCrashed, match="disk is full"):
        async with Supervisor(plugins=plugins, store=FullAt(path, {"succeeded"})) as sup:
            held = await sup.submit("fake.gate", {"key": "held"})
            await gates.wait_entered("held")
            lost = await sup.submit("leaky.keep", {"text": "its outcome is refused"})
            with anyio.fail_after(10):
                await sup.wait(lost.id)
    async with Supervisor(plugins=plugins, store=SqliteStore(path)) as sup:
        assert sup.recovered.interrupted == 2
        ends = [await sup.get(job.id) for job in (held, lost)]
    assert [(end.state, end.error.type if end.error else None) for end in ends] == [
        (JobState.FAILED, "interrupted")
    ] * 2


async def test_a_tool_runs_only_once_its_running_state_is_committed(tmp_path: Path) -> None:
    """While the running commit is held, a tool without retry_on_interrupt is not called."""
    store = HeldStore(tmp_path / "jobs.db", {"running"})
    contexts: list[ToolContext] = []
    async with Supervisor(plugins=[_leaky_plugin(contexts)], store=store) as sup:
        record = await sup.submit("leaky.keep", {"text": "hi"})
        await anyio.to_thread.run_sync(store.holding.wait)
        await anyio.wait_all_tasks_blocked()
        assert contexts == []
        store.release()
        assert (await sup.wait(record.id)).state is JobState.SUCCEEDED
    assert len(contexts) == 1


async def test_a_retry_on_interrupt_tool_runs_before_its_running_commit(tmp_path: Path) -> None:
    """A tool that is safe to run again after a crash starts without waiting for its running
    commit; subscribers still see the running event only once it is committed, then the rest."""
    store = HeldStore(tmp_path / "jobs.db", {"running"})
    contexts: list[ToolContext] = []
    async with Supervisor(plugins=[_leaky_plugin(contexts)], store=store) as sup:
        record = await sup.submit("leaky.again", {"text": "hi"})
        async with sup.subscribe(job_id=record.id) as events:
            first = await events.__anext__()
            await anyio.to_thread.run_sync(store.holding.wait)
            await anyio.wait_all_tasks_blocked()
            assert len(contexts) == 1
            assert (await sup.get(record.id)).state is JobState.RUNNING
            store.release()
            kinds = [event.type.rsplit(".", 1)[1] async for event in events]
    assert first.type.endswith(".queued")
    assert kinds == ["running", "succeeded"]


@pytest.mark.parametrize(("tool", "calls"), [("leaky.again", 1), ("leaky.keep", 0)])
async def test_a_lost_running_commit_stops_the_supervisor(
    tmp_path: Path, tool: str, calls: int
) -> None:
    """A running commit that fails stops the supervisor, whether it was written behind (a
    retry_on_interrupt tool, already called by then) or the job was started ahead (any other
    tool, never called)."""
    store = FullAt(tmp_path / "jobs.db", {"running"})
    contexts: list[ToolContext] = []
    with pytest.raises(SupervisorCrashed, match=r"the job store failed: .*disk is full"):
        async with Supervisor(
            plugins=[_leaky_plugin(contexts)], store=store, max_restarts=100
        ) as sup:
            record = await sup.submit(tool, {"text": "never started"})
            with anyio.fail_after(10):
                await sup.wait(record.id)
    assert len(contexts) == calls


async def test_a_job_cut_off_at_shutdown_reaches_subscribers_cancelled(tmp_path: Path) -> None:
    """A job the supervisor's exit cancels is committed before the subscriptions end, so a
    subscriber still gets its cancelled event (that outcome is not written behind)."""
    plugin = Plugin("blocking", version="1.0.0")
    began = anyio.Event()

    @plugin.tool(timeout=60.0)
    async def block(inp: TextIn, ctx: ToolContext) -> TextIn:
        """Wait until cancelled."""
        began.set()
        await anyio.sleep_forever()
        return inp

    kinds: list[str] = []
    store = SqliteStore(tmp_path / "jobs.db")
    supervisor = Supervisor(plugins=[plugin], store=store, shutdown_grace_s=0)
    async with anyio.create_task_group() as tg, supervisor as sup:
        record = await sup.submit("blocking.block", {"text": "cut off"})

        async def collect(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            async with sup.subscribe(job_id=record.id) as events:
                task_status.started()
                kinds.extend([event.type.rsplit(".", 1)[1] async for event in events])

        await tg.start(collect)
        await began.wait()
    assert kinds == ["queued", "running", "cancelled"]


def _waiting_plugin(began: anyio.Event, finish: anyio.Event | None = None) -> Plugin:
    plugin = Plugin("waiting", version="1.0.0")

    @plugin.tool(timeout=30.0)
    async def wait(inp: TextIn, ctx: ToolContext) -> TextIn:
        """Note that it began, then wait until ``finish`` is set (without one, until cancelled)."""
        began.set()
        await (anyio.sleep_forever() if finish is None else finish.wait())
        return inp

    return plugin


async def test_a_job_cancelled_while_its_start_is_committed_ends_cancelled(
    tmp_path: Path,
) -> None:
    """A cancel that arrives while a job's running commit is still on its way (its start was
    queued ahead) asks the call to stop: once committed, the job runs cancelled from the start
    and ends cancelled after its running event."""
    store = HeldStore(tmp_path / "jobs.db", {"running"})
    began = anyio.Event()
    async with Supervisor(plugins=[_waiting_plugin(began)], store=store) as sup:
        record = await sup.submit("waiting.wait", {"text": "hi"})
        async with sup.subscribe(job_id=record.id) as events:
            await anyio.to_thread.run_sync(store.holding.wait)
            await anyio.wait_all_tasks_blocked()
            assert not began.is_set()
            answers: list[JobRecord] = []

            async def cancel() -> None:
                answers.append(await sup.cancel(record.id))

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel)
                await anyio.wait_all_tasks_blocked()
                assert answers == []  # it reads running: the cancel waits for its end
                store.release()
            kinds = [event.type.rsplit(".", 1)[1] async for event in events]
    assert kinds == ["queued", "running", "cancelled"]
    assert answers[0].state is JobState.CANCELLED
    assert answers[0].error is not None
    assert answers[0].error.type == "cancelled"


async def test_the_shutdown_grace_covers_a_start_still_being_committed(tmp_path: Path) -> None:
    """A supervisor leaving while a job's running commit is on its way waits for it within
    the grace: the job runs and succeeds instead of being cut off."""
    store = HeldStore(tmp_path / "jobs.db", {"running"})
    contexts: list[ToolContext] = []
    supervisor = Supervisor(plugins=[_leaky_plugin(contexts)], store=store, shutdown_grace_s=30)
    async with anyio.create_task_group() as tg, supervisor as sup:
        record = await sup.submit("leaky.keep", {"text": "hi"})
        await anyio.to_thread.run_sync(store.holding.wait)
        await anyio.wait_all_tasks_blocked()
        assert sup._scheduler.pending_starts == 1
        tg.start_soon(anyio.to_thread.run_sync, store.release)
    reader = SqliteStore(tmp_path / "jobs.db")
    await reader.open()
    try:
        stored = await reader.get(record.id)
    finally:
        await reader.close()
    assert stored is not None
    assert stored.state is JobState.SUCCEEDED
    assert len(contexts) == 1


async def test_jobs_started_ahead_never_run_more_than_the_concurrency(tmp_path: Path) -> None:
    """With starts queued ahead, no more jobs than the concurrency are ever running: in the
    store, in the supervisor's count, or in the tool; the others stay queued until one ends."""
    plugin = Plugin("gated", version="1.0.0")
    inside: list[str] = []
    full = anyio.Event()
    gate = anyio.Event()

    @plugin.tool(timeout=30.0)
    async def hold(inp: TextIn, ctx: ToolContext) -> TextIn:
        """Wait at the gate (the third to arrive says the concurrency is reached)."""
        inside.append(ctx.job_id)
        if len(inside) == 3:
            full.set()
        await gate.wait()
        return inp

    async with Supervisor(
        plugins=[plugin], store=SqliteStore(tmp_path / "jobs.db"), concurrency=3
    ) as sup:
        records: list[JobRecord] = []

        async def submit(n: int) -> None:
            records.append(await sup.submit("gated.hold", {"text": str(n)}))

        async with anyio.create_task_group() as tg:  # admitted together, runners all free
            for n in range(12):
                tg.start_soon(submit, n)
        with anyio.fail_after(10):
            await full.wait()
        await anyio.wait_all_tasks_blocked()  # a fourth start would have been made by now
        running = await sup.list_jobs(JobQuery(state=JobState.RUNNING))
        queued = await sup.list_jobs(JobQuery(state=JobState.QUEUED))
        assert len(running.jobs) == 3
        assert len(queued.jobs) == 9
        assert sup.statistics().running == 3
        assert len(inside) == 3
        gate.set()
        for record in records:
            assert (await sup.wait(record.id, timeout=10)).state is JobState.SUCCEEDED
    assert sorted(inside) == sorted(record.id for record in records)


async def test_a_submit_cancelled_while_its_job_commits_still_runs_the_job(
    tmp_path: Path,
) -> None:
    """A caller cancelled while its job's put is being committed gets the cancellation, yet the
    stored job is queued and run (put_then told the supervisor it was stored) and its events
    reach subscribers in order."""
    store = HeldStore(tmp_path / "jobs.db", {"queued"})
    contexts: list[ToolContext] = []
    returned: list[JobRecord] = []
    async with Supervisor(plugins=[_leaky_plugin(contexts)], store=store) as sup:
        async with sup.subscribe() as events:
            async with anyio.create_task_group() as tg:

                async def submit(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
                    with anyio.CancelScope() as scope:
                        task_status.started(scope)
                        returned.append(await sup.submit("leaky.keep", {"text": "hi"}))

                scope = await tg.start(submit)
                await anyio.to_thread.run_sync(store.holding.wait)
                scope.cancel()
                await anyio.wait_all_tasks_blocked()
                store.release()
            seen = [await events.__anext__() for _ in range(3)]
        final = await sup.wait(seen[0].subject)
    assert returned == []
    assert [event.type.rsplit(".", 1)[1] for event in seen] == ["queued", "running", "succeeded"]
    assert final.state is JobState.SUCCEEDED
    assert len(contexts) == 1


async def test_a_keyed_submit_cancelled_while_its_job_commits_still_runs_the_job(
    tmp_path: Path,
) -> None:
    """A submit with an idempotency key, cancelled while its job's put is being committed, still
    leaves the job queued and run, so the same key submitted again names a job that ends."""
    store = HeldStore(tmp_path / "jobs.db", {"queued"})
    contexts: list[ToolContext] = []
    returned: list[JobRecord] = []
    async with Supervisor(plugins=[_leaky_plugin(contexts)], store=store) as sup:
        async with anyio.create_task_group() as tg:

            async def submit(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
                with anyio.CancelScope() as scope:
                    task_status.started(scope)
                    returned.append(
                        await sup.submit("leaky.keep", {"text": "hi"}, idempotency_key="k1")
                    )

            scope = await tg.start(submit)
            await anyio.to_thread.run_sync(store.holding.wait)
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            store.release()
        again = await sup.submit("leaky.keep", {"text": "hi"}, idempotency_key="k1")
        final = await sup.wait(again.id, timeout=10)
    assert returned == []
    assert final.state is JobState.SUCCEEDED
    assert final.idempotency_key == "k1"
    assert len(contexts) == 1


async def test_a_refused_submit_cancelled_while_it_commits_still_reports_the_failure(
    tmp_path: Path,
) -> None:
    """A submit its tool's open circuit refuses, cancelled while the failed job is being
    committed, still delivers the job's failed event to a live subscriber."""
    store = HeldStore(tmp_path / "jobs.db", set())
    plugin = Plugin("flaky", version="1.0.0")

    @plugin.tool(timeout=5.0, circuit_failures=1)
    async def fail(inp: TextIn, ctx: ToolContext) -> TextIn:
        """Fail, opening the circuit."""
        raise RuntimeError(inp.text)

    async with Supervisor(plugins=[plugin], store=store) as sup:
        first = await sup.wait((await sup.submit("flaky.fail", {"text": "no"})).id, timeout=10)
        assert first.state is JobState.FAILED
        store.states = {"failed"}
        async with sup.subscribe(since=(await store.event_bounds()).last) as events:
            async with anyio.create_task_group() as tg:

                async def submit(*, task_status: anyio.abc.TaskStatus[anyio.CancelScope]) -> None:
                    with anyio.CancelScope() as scope:
                        task_status.started(scope)
                        await sup.submit("flaky.fail", {"text": "no"})

                scope = await tg.start(submit)
                await anyio.to_thread.run_sync(store.holding.wait)
                scope.cancel()
                await anyio.wait_all_tasks_blocked()
                store.release()
            with anyio.fail_after(10):
                seen = await events.__anext__()
        refused = await sup.wait(seen.subject, timeout=10)
    assert seen.type == f"{EVENT_TYPE_PREFIX}failed"
    assert refused.error is not None
    assert refused.error.type == "circuit_open"


async def test_a_refused_put_creates_no_job_and_later_events_flow(tmp_path: Path) -> None:
    """A put the file refuses is a StoreUnavailable and leaves no job; its event offset is let go,
    so the next job's events reach a live subscriber, with no reset for the missing offset."""
    store = SqliteStore(tmp_path / "jobs.db")
    contexts: list[ToolContext] = []
    async with Supervisor(plugins=[_leaky_plugin(contexts)], store=store) as sup:
        with sqlite3.connect(store.path) as db:
            db.execute(
                "CREATE TRIGGER full BEFORE INSERT ON jobs"
                " WHEN instr(CAST(NEW.record AS TEXT), 'refuse me') > 0"
                " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        async with sup.subscribe() as events:
            with pytest.raises(StoreUnavailable, match="disk is full"):
                await sup.submit("leaky.keep", {"text": "refuse me"})
            record = await sup.submit("leaky.keep", {"text": "keep me"})
            seen = [await events.__anext__() for _ in range(3)]
        listed = await sup.list_jobs(JobQuery())
    assert [(type(event), event.subject) for event in seen] == [(JobEvent, record.id)] * 3
    assert [job.id for job in listed.jobs] == [record.id]
    assert sup.statistics().queued == 0


@pytest.mark.parametrize("tool", ["leaky.keep", "leaky.again"])
async def test_a_start_the_store_refuses_at_once_stops_the_supervisor_uncalled(
    tmp_path: Path, tool: str
) -> None:
    """A running change the store refuses to queue stops the supervisor before the tool is
    called, whether the job was to start ahead or at once; the file keeps the job queued, so the
    next supervisor runs it."""
    path = tmp_path / "jobs.db"
    contexts: list[ToolContext] = []
    with pytest.raises(SupervisorCrashed, match=r"the job store failed: .*was killed") as info:
        async with Supervisor(
            plugins=[_leaky_plugin(contexts)], store=RefusingAt(path, {"running"})
        ) as sup:
            record = await sup.submit(tool, {"text": "hi"})
            with anyio.fail_after(10):
                await sup.wait(record.id)
    assert isinstance(info.value.__cause__, StoreError)
    assert contexts == []
    async with Supervisor(plugins=[_leaky_plugin(contexts)], store=SqliteStore(path)) as sup:
        assert (await sup.wait(record.id, timeout=10)).state is JobState.SUCCEEDED
    assert len(contexts) == 1


async def test_an_outcome_queued_after_the_writer_died_stops_the_supervisor(
    tmp_path: Path,
) -> None:
    """A job that ends after the writer process was killed stops the supervisor as its outcome
    is queued; its end reaches no subscriber, the shutdown still closes the store, and the file
    keeps the job running, so the next supervisor fails it as interrupted."""
    path = tmp_path / "jobs.db"
    store = SqliteStore(path)
    began = anyio.Event()
    finish = anyio.Event()
    plugin = _waiting_plugin(began, finish)
    seen: list[str] = []
    with (
        capture_logs() as logs,
        pytest.raises(SupervisorCrashed, match=r"the job store failed: .*killed by SIGKILL"),
    ):
        async with (
            Supervisor(plugins=[plugin], store=store) as sup,
            anyio.create_task_group() as tg,
        ):
            record = await sup.submit("waiting.wait", {"text": "hi"})

            async def collect(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                async with sup.subscribe(job_id=record.id) as events:
                    task_status.started()
                    async for event in events:  # until the crash cancels it
                        seen.append(event.type.rsplit(".", 1)[1])

            await tg.start(collect)
            await began.wait()
            pid = store._commits.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            # Any write waits until the store has seen the writer's end, then fails.
            with pytest.raises(StoreError, match="killed by SIGKILL"):
                await store.purge(finished_before=None, keep_finished=0)
            finish.set()
            with anyio.fail_after(10):
                await sup.wait(record.id)
    assert seen == ["queued", "running"]
    # Still running, the job is left as the file has it (no cancel is tried over a store that
    # failed), and the store was closed (its file is free for the next supervisor).
    left = [e for e in logs if e["event"].startswith("the job store failed: jobs still running")]
    assert [e["job_ids"] for e in left] == [[record.id]]
    async with Supervisor(plugins=[plugin], store=SqliteStore(path)) as sup:
        ended = await sup.get(record.id)
    assert ended.state is JobState.FAILED
    assert ended.error is not None
    assert ended.error.type == OutcomeType.INTERRUPTED
