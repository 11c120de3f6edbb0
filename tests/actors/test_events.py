"""The event stream: offsets, resume with since, retention resets, and slow subscribers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest

from jobwarden import JobEvent, MemoryStore, StreamEvent, StreamReset, Supervisor, builtin, errors
from jobwarden.actors.event_bus import EventBus
from jobwarden.actors.states import JobState
from jobwarden.records import EventData, JobRecord
from jobwarden.store.base import EventBounds
from jobwarden.store.sqlite import SqliteStore
from tests.fakes import FullStore, Gates, PausingStore, fake_plugin

pytestmark = pytest.mark.anyio


async def collect(sup: Supervisor, count: int, **filters: object) -> list[StreamEvent]:
    """The first ``count`` events of a subscription opened with ``filters``."""
    got: list[StreamEvent] = []
    async with sup.subscribe(**filters) as events:  # type: ignore[arg-type]
        async for event in events:
            got.append(event)
            if len(got) == count:
                break
    return got


async def test_global_offsets_strictly_increase_across_jobs() -> None:
    """Events of many jobs carry one strictly increasing offset sequence with no gaps."""
    async with Supervisor(plugins=[builtin]) as sup:
        ids = [(await sup.submit("builtin.echo", {"text": str(n)})).id for n in range(20)]
        for job_id in ids:
            await sup.wait(job_id, timeout=5)
        events = await collect(sup, 60, since=0)
        assert [e.offset for e in events] == list(range(1, 61))


async def test_resume_with_since_has_no_duplicates_and_no_gap() -> None:
    """A subscriber that stops and resumes with since=<last id> sees every event exactly once."""
    async with Supervisor(plugins=[builtin]) as sup:
        for n in range(10):
            await sup.submit("builtin.echo", {"text": str(n)})
        first = await collect(sup, 7, since=0)
        for n in range(10, 20):
            await sup.submit("builtin.echo", {"text": str(n)})
        rest = await collect(sup, 60 - 7, since=first[-1].offset)
        offsets = [e.offset for e in first + rest]
        assert offsets == list(range(1, 61))


async def test_live_subscriber_then_replay_switch_is_seamless() -> None:
    """Events published while a subscriber replays history arrive once, in order."""
    async with Supervisor(plugins=[builtin]) as sup:
        for n in range(300):
            await sup.submit("builtin.echo", {"text": str(n)})
        seen: list[int] = []
        async with sup.subscribe(since=0) as events:
            async for event in events:
                seen.append(event.offset)
                if len(seen) == 450:
                    for n in range(300, 400):
                        await sup.submit("builtin.echo", {"text": str(n)})
                if len(seen) == 1200:
                    break
        assert seen == list(range(1, 1201))


async def test_batches_across_the_replay_switch_have_no_duplicates_or_gaps() -> None:
    """Batches taken while history replays and live events pile up hold every event once."""
    async with Supervisor(plugins=[builtin]) as sup:
        for n in range(300):
            await sup.submit("builtin.echo", {"text": str(n)})
        seen: list[int] = []
        more = range(300, 400)
        async with sup.subscribe(since=0) as events:
            while len(seen) < 1200:
                seen.extend(event.offset for event in await events.batch())
                if len(seen) >= 450 and more:
                    for n in more:
                        await sup.submit("builtin.echo", {"text": str(n)})
                    more = range(0)
        assert seen == list(range(1, 1201))


async def test_batch_skips_live_events_that_replay_already_yielded() -> None:
    """An event both replayed from the store and buffered live is in exactly one batch."""
    async with Supervisor(plugins=[builtin]) as sup:
        await sup.wait((await sup.submit("builtin.echo", {"text": "old"})).id, timeout=5)
        async with sup.subscribe(since=0) as events:
            await sup.wait((await sup.submit("builtin.echo", {"text": "new"})).id, timeout=5)
            seen: list[int] = []
            while len(seen) < 6:
                seen.extend(event.offset for event in await events.batch())
            await sup.submit("builtin.echo", {"text": "later"})
            seen.extend(event.offset for event in await events.batch())
        assert seen == list(range(1, 8))


async def test_a_since_past_the_newest_event_means_from_now_on() -> None:
    """A subscription resuming after an offset no event has yet gets the events from now on,
    and a job's stream ends after its terminal event (it dropped them all as seen, forever)."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        held = await sup.submit("fake.gate", {"key": "held"})
        await gates.wait_entered("held")
        with anyio.fail_after(10):
            async with (
                sup.subscribe(since=10**9, job_id=held.id) as job_events,
                sup.subscribe(since=10**9) as all_events,
            ):
                gates.open("held")
                of_the_job = [event.type async for event in job_events]
                first = await anext(all_events)
    assert of_the_job == ["jobwarden.job.succeeded"]
    assert (first.type, first.subject) == ("jobwarden.job.succeeded", held.id)


async def test_a_since_past_the_newest_event_gets_a_terminal_event_still_being_committed() -> None:
    """A job's stream resuming after an offset no event has yet, while the job's terminal event
    is numbered but not yet committed, gets that event once committed and ends; before, the
    event counted as already seen and the stream stayed open."""
    gates = Gates()
    store = PausingStore()
    async with Supervisor(plugins=[fake_plugin(gates)], store=store) as sup:
        held = await sup.submit("fake.gate", {"key": "held"})
        store.job_id = held.id
        await gates.wait_entered("held")
        gates.open("held")
        with anyio.fail_after(10):
            await store.paused.wait()
            async with sup.subscribe(since=10**9, job_id=held.id) as events:
                store.release()
                of_the_job = [event.type async for event in events]
    assert of_the_job == ["jobwarden.job.succeeded"]


async def test_since_none_means_only_new_events() -> None:
    """A global subscription without since starts after the newest event."""
    async with Supervisor(plugins=[builtin]) as sup:
        await sup.wait((await sup.submit("builtin.echo", {"text": "old"})).id, timeout=5)
        async with sup.subscribe() as events:
            new = await sup.submit("builtin.echo", {"text": "new"})
            event = await events.__anext__()
            assert isinstance(event, JobEvent)
            assert event.subject == new.id


class BoundsPause(MemoryStore):
    """A memory store whose next ``event_bounds`` call, once ``armed``, reads the bounds and then
    waits for ``release`` before it returns them: events committed meanwhile are newer."""

    def __init__(self) -> None:
        super().__init__()
        self.armed = False
        self.reading = anyio.Event()
        self._release = anyio.Event()

    def release(self) -> None:
        self._release.set()

    async def event_bounds(self) -> EventBounds:
        bounds = await super().event_bounds()
        if self.armed:
            self.armed = False
            self.reading.set()
            await self._release.wait()
        return bounds


async def test_since_is_where_a_subscription_starts_even_with_events_while_it_subscribes() -> None:
    """A subscription's ``since`` is the offset it starts after (the newest when it read it, or
    the one asked for): a job that ran while it subscribed comes after it, each event once."""
    store = BoundsPause()
    async with Supervisor(plugins=[builtin], store=store) as sup:
        await sup.wait((await sup.submit("builtin.echo", {"text": "old"})).id, timeout=5)
        meanwhile: list[str] = []

        async def run_a_job_while_it_subscribes() -> None:
            await store.reading.wait()
            job = await sup.submit("builtin.echo", {"text": "meanwhile"})
            meanwhile.append(job.id)
            await sup.wait(job.id, timeout=5)
            store.release()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run_a_job_while_it_subscribes)
                store.armed = True
                async with sup.subscribe() as events:
                    since = events.since
                    got = [await anext(events) for _ in range(3)]
            async with sup.subscribe(since=1) as resumed, sup.subscribe(since=99) as ahead:
                since_given, since_clamped = resumed.since, ahead.since
    assert since == 3
    assert [(e.offset, e.subject) for e in got] == [(n, meanwhile[0]) for n in (4, 5, 6)]
    assert (since_given, since_clamped) == (1, 6)


@pytest.mark.parametrize(
    ("filters", "wording"),
    [
        ({"since": -1}, "since must be an event offset (an int >= 0), not -1"),
        ({"since": "3"}, "since must be an event offset (an int >= 0), not '3'"),
        ({"since": True}, "since must be an event offset (an int >= 0), not True"),
        ({"since": 2.0}, "since must be an event offset (an int >= 0), not 2.0"),
        ({"buffer": 0}, "buffer must be an int >= 1, not 0"),
        ({"buffer": -5}, "buffer must be an int >= 1, not -5"),
        ({"buffer": 1.5}, "buffer must be an int >= 1, not 1.5"),
    ],
)
async def test_a_subscription_with_an_impossible_since_or_buffer_is_refused(
    filters: dict[str, object], wording: str
) -> None:
    """A since that is no offset or a buffer below one is InvalidRequest, and events flow on."""
    async with Supervisor(plugins=[builtin]) as sup:
        with pytest.raises(errors.InvalidRequest) as caught:
            async with sup.subscribe(**filters):  # type: ignore[arg-type]
                pass
        assert str(caught.value) == wording
        assert sup.statistics().subscribers == 0
        done = await sup.wait((await sup.submit("builtin.echo", {"text": "x"})).id, timeout=5)
        assert [e.type for e in await collect(sup, 3, since=0)] == [
            "jobwarden.job.queued",
            "jobwarden.job.running",
            "jobwarden.job.succeeded",
        ]
        assert done.state is JobState.SUCCEEDED


async def test_filters_by_tool_and_job() -> None:
    """tool= and job_id= subscriptions see only matching events; a job stream ends by itself."""
    async with Supervisor(plugins=[builtin]) as sup:
        echo = await sup.submit("builtin.echo", {"text": "x"})
        fail = await sup.submit("builtin.fail", {})
        await sup.wait(fail.id, timeout=5)
        await sup.wait(echo.id, timeout=5)
        only_fail = await collect(sup, 3, since=0, tool="builtin.fail")
        assert {e.subject for e in only_fail} == {fail.id}
        async with sup.subscribe(job_id=echo.id) as events:
            job_events = [e async for e in events]
        assert [e.type for e in job_events][-1] == "jobwarden.job.succeeded"
        assert {e.subject for e in job_events} == {echo.id}
        with pytest.raises(errors.ToolNotFound):
            async with sup.subscribe(tool="builtin.nope"):
                pass
        with pytest.raises(errors.JobNotFound):
            async with sup.subscribe(job_id="nope"):
                pass


async def test_job_subscription_follows_a_live_job_to_its_end() -> None:
    """Subscribing to a running job replays its past events, then live ones, then ends."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.gate", {"key": "j"})
        await gates.wait_entered("j")
        got: list[str] = []
        async with sup.subscribe(job_id=rec.id) as events:
            async for event in events:
                got.append(event.type)
                if event.type == "jobwarden.job.running":
                    gates.open("j")
        assert got == ["jobwarden.job.queued", "jobwarden.job.running", "jobwarden.job.succeeded"]


async def test_a_job_stream_filtered_by_state_still_ends_with_the_job() -> None:
    """A job's stream with a state filter yields only that state's events and ends after the
    job's terminal event whatever its state, live (iterated or in batches) and replayed; before,
    a terminal event the filter dropped left the stream open forever."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.gate", {"key": "j"})
        await gates.wait_entered("j")
        running = []
        with anyio.fail_after(10):
            async with sup.subscribe(job_id=rec.id, since=0, state=JobState.RUNNING) as events:
                async for event in events:
                    running.append(event.type)
                    gates.open("j")  # the job succeeds: its last event is not RUNNING
            async with sup.subscribe(job_id=rec.id, since=0, state=JobState.FAILED) as events:
                failed = [event async for event in events]
            held = await sup.submit("fake.gate", {"key": "k"})
            await gates.wait_entered("k")
            async with sup.subscribe(job_id=held.id, state=JobState.SUCCEEDED) as events:
                await sup.cancel(held.id)
                batches = []
                while batch := await events.batch():
                    batches.append(batch)
    assert running == ["jobwarden.job.running"]
    assert failed == []
    assert batches == []


async def test_a_job_stream_filtered_by_another_tool_ends_with_the_job() -> None:
    """A job's stream whose tool filter names another tool yields nothing and ends after the
    job's terminal event, live (iterated or in batches) and replayed, while its own tool's filter
    yields every event; before, the filter dropped the terminal event and the stream stayed open."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates), builtin]) as sup:
        first = await sup.submit("fake.gate", {"key": "j"})
        second = await sup.submit("fake.gate", {"key": "k"})
        iterated: list[StreamEvent] = []
        batches: list[list[StreamEvent]] = []

        async def iterate() -> None:
            async with sup.subscribe(job_id=first.id, tool="builtin.echo") as events:
                iterated.extend([event async for event in events])

        async def in_batches() -> None:
            async with sup.subscribe(job_id=second.id, tool="builtin.echo") as events:
                while batch := await events.batch():
                    batches.append(batch)

        with anyio.fail_after(10):
            await gates.wait_entered("j")
            await gates.wait_entered("k")
            async with anyio.create_task_group() as tg:
                tg.start_soon(iterate)
                tg.start_soon(in_batches)
                await anyio.wait_all_tasks_blocked()  # both replayed and wait for live events
                gates.open("j")
                gates.open("k")
            async with sup.subscribe(job_id=first.id, tool="builtin.echo") as events:
                replayed = [event async for event in events]
            async with sup.subscribe(job_id=first.id, tool="fake.gate") as events:
                own = [event.type async for event in events]
    assert (iterated, batches, replayed) == ([], [], [])
    assert own == ["jobwarden.job.queued", "jobwarden.job.running", "jobwarden.job.succeeded"]


async def test_a_state_filter_given_as_its_str_value_works_as_the_member() -> None:
    """``state="succeeded"`` filters a job's stream as ``JobState.SUCCEEDED`` does, replayed and
    live in batches; before, a str never matched and the stream yielded nothing."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup:
        rec = await sup.submit("fake.gate", {"key": "j"})
        with anyio.fail_after(10):
            async with sup.subscribe(job_id=rec.id, state="succeeded") as events:
                await gates.wait_entered("j")
                gates.open("j")
                live: list[str] = []
                while batch := await events.batch():
                    live.extend(event.type for event in batch)
            async with sup.subscribe(job_id=rec.id, state="succeeded") as events:
                replayed = [event.type async for event in events]
    assert live == replayed == ["jobwarden.job.succeeded"]


async def test_resume_older_than_retention_gets_a_reset_first() -> None:
    """since older than the retained history yields a stream.reset before any event."""
    store = MemoryStore(retain_events=10)
    async with Supervisor(plugins=[builtin], store=store) as sup:
        for n in range(10):
            await sup.wait((await sup.submit("builtin.echo", {"text": str(n)})).id, timeout=5)
        events = await collect(sup, 4, since=3)
        reset = events[0]
        assert isinstance(reset, StreamReset)
        assert reset.type == "jobwarden.stream.reset"
        assert (reset.data.requested_since, reset.data.first_retained) == (3, 21)
        assert reset.offset == 20
        assert [e.offset for e in events[1:]] == [21, 22, 23]


async def test_a_job_whose_history_is_whole_gets_no_reset(tmp_path: Path) -> None:
    """A job's stream from since=0 after older jobs were purged replays the job's events with no
    stream.reset (the job lost nothing), on the memory and the SQLite store; a job whose own
    first events are gone still gets one."""
    for store in (MemoryStore(retain_events=5), SqliteStore(tmp_path / "jobs.db")):
        async with Supervisor(plugins=[builtin], store=store) as sup:
            jobs = []
            for n in range(3):  # one after the other: each job's 3 events in a row
                jobs.append(await sup.submit("builtin.echo", {"text": str(n)}))
                await sup.wait(jobs[-1].id, timeout=5)
            if isinstance(store, SqliteStore):
                await store.purge(finished_before=None, keep_finished=1)
            else:
                # The log keeps 5 events: the last job's 3 and the second's last 2.
                partial = await collect(sup, 3, job_id=jobs[1].id, since=0)
                assert [type(event) for event in partial] == [StreamReset, JobEvent, JobEvent]
            whole = await collect(sup, 3, job_id=jobs[2].id, since=0)
        assert [type(event) for event in whole] == [JobEvent] * 3
        assert whole[0].type == "jobwarden.job.queued"


async def test_an_offset_never_committed_is_no_reset_for_a_live_subscriber() -> None:
    """A live subscriber whose first offset was let go (that job's put was refused) gets the next
    job's events with no stream.reset before them: nothing was purged."""
    store = FullStore()
    async with Supervisor(plugins=[builtin], store=store) as sup, sup.subscribe() as events:
        store.fail_puts = True
        with pytest.raises(errors.StoreUnavailable):
            await sup.submit("builtin.echo", {"text": "refused"})
        store.fail_puts = False
        record = await sup.submit("builtin.echo", {"text": "kept"})
        got = [await events.__anext__() for _ in range(3)]
    assert [(type(event), event.subject) for event in got] == [(JobEvent, record.id)] * 3
    assert [event.offset for event in got] == [2, 3, 4]


async def test_finished_job_whose_events_were_purged_ends_after_reset() -> None:
    """A terminal job whose history is gone yields the reset notice and then ends, not hangs."""
    store = MemoryStore(retain_events=3)
    async with Supervisor(plugins=[builtin], store=store) as sup:
        old = await sup.submit("builtin.echo", {"text": "old"})
        await sup.wait(old.id, timeout=5)
        for n in range(3):
            await sup.wait((await sup.submit("builtin.echo", {"text": str(n)})).id, timeout=5)
        async with sup.subscribe(job_id=old.id) as events:
            got = [e async for e in events]
        assert [type(e) for e in got] == [StreamReset]


async def test_slow_subscriber_is_dropped_while_others_keep_receiving() -> None:
    """A subscriber that overflows its buffer is dropped with SubscriberOverflow; others get all."""
    async with (
        Supervisor(plugins=[builtin], subscriber_buffer=5) as sup,
        sup.subscribe() as slow,
        sup.subscribe() as fast,
    ):
        await sup.submit("builtin.echo", {"text": "first"})
        assert (await slow.__anext__()).offset == 1  # now live; it reads nothing more
        fast_seen: list[int] = [(await fast.__anext__()).offset]
        for n in range(4):
            if n:
                await sup.submit("builtin.echo", {"text": str(n)})
            # The fast reader drains after every submit; the slow one has stopped reading.
            for _ in range(3 if n else 2):
                fast_seen.append((await fast.__anext__()).offset)
        assert fast_seen == list(range(1, 13))
        assert sup.statistics().subscribers == 1
        slow_seen: list[int] = []
        with pytest.raises(errors.SubscriberOverflow) as caught:
            async for event in slow:
                slow_seen.append(event.offset)
        assert slow_seen == [2, 3, 4, 5, 6]
        assert caught.value.last_offset == 6
        resumed = await collect(sup, 6, since=caught.value.last_offset)
        assert [e.offset for e in resumed] == list(range(7, 13))


async def test_subscriber_that_never_reads_costs_a_bounded_buffer() -> None:
    """A subscriber that has not started reading keeps at most its buffer and loses nothing."""
    async with (
        Supervisor(plugins=[builtin], subscriber_buffer=5) as sup,
        sup.subscribe() as idle,
    ):
        for n in range(10):
            await sup.wait((await sup.submit("builtin.echo", {"text": str(n)})).id, timeout=5)
        assert sup.statistics().subscribers == 1
        seen = []
        async for event in idle:
            seen.append(event.offset)
            if len(seen) == 30:
                break
        assert seen == list(range(1, 31))


async def test_overflow_during_replay_recovers_from_the_store() -> None:
    """Live events overflowing a replaying subscriber are re-read from the store, not lost."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)], subscriber_buffer=4, concurrency=1) as sup:
        await sup.submit("fake.gate", {"key": "hold"})  # occupies the only runner
        await gates.wait_entered("hold")
        for n in range(5):
            await sup.submit("fake.gate", {"key": str(n)})
        async with sup.subscribe(since=0) as events:
            seen = [(await events.__anext__()).offset]
            for n in range(5, 15):
                await sup.submit("fake.gate", {"key": str(n)})
            async for event in events:
                seen.append(event.offset)
                if len(seen) == 17:
                    break
        assert seen == list(range(1, 18))
        gates.open("hold")


async def test_subscriptions_end_when_the_supervisor_stops() -> None:
    """An open subscription finishes cleanly when the supervisor shuts down."""
    got: list[StreamEvent] = []
    async with anyio.create_task_group() as tg:
        sup = Supervisor(plugins=[builtin])
        ready = anyio.Event()

        async def reader() -> None:
            async with sup.subscribe() as events:
                ready.set()
                got.extend([e async for e in events])

        async with sup:
            tg.start_soon(reader)
            await ready.wait()
            await sup.wait((await sup.submit("builtin.echo", {"text": "x"})).id, timeout=5)
    assert [e.type for e in got][-1] == "jobwarden.job.succeeded"


async def test_batch_takes_every_buffered_event_in_one_go() -> None:
    """A batch holds every live event buffered behind the first, in order, and [] at the end."""
    gates = Gates()
    async with Supervisor(plugins=[fake_plugin(gates)]) as sup, sup.subscribe() as events:
        first = await sup.submit("fake.gate", {"key": "a"})
        await gates.wait_entered("a")
        gates.open("a")
        await sup.wait(first.id, timeout=5)
        assert [e.offset for e in await events.batch()] == [1, 2, 3]
        second = await sup.submit("fake.gate", {"key": "b"})
        async with sup.subscribe(job_id=second.id) as job_events:
            assert [e.offset for e in await job_events.batch()] == [4]
            await gates.wait_entered("b")
            gates.open("b")
            await sup.wait(second.id, timeout=5)
            await sup.wait((await sup.submit("fake.gate", {"key": "a"})).id, timeout=5)
            assert [e.offset for e in await job_events.batch()] == [5, 6]
            assert await job_events.batch() == []


async def test_batch_after_an_overflow_raises_once_drained() -> None:
    """An overflowed subscriber's batches yield what it had, then raise SubscriberOverflow."""
    async with (
        Supervisor(plugins=[builtin], subscriber_buffer=2) as sup,
        sup.subscribe() as slow,
    ):
        await sup.submit("builtin.echo", {"text": "first"})
        assert [e.offset for e in await slow.batch()] == [1]
        await sup.wait((await sup.submit("builtin.echo", {"text": "second"})).id, timeout=5)
        assert [e.offset for e in await slow.batch()] == [2, 3]
        with pytest.raises(errors.SubscriberOverflow):
            await slow.batch()


def test_an_event_carries_each_field_of_its_record_in_its_place() -> None:
    """The bus's event has the offset, source, type, job, time and every data field where the
    CloudEvent's names say (built positionally: a reordered field would show here)."""
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    error = errors.ErrorInfo(type="plugin_error", message="boom")
    record = JobRecord(
        id="job-1",
        tool="demo.echo",
        plugin="demo",
        state=JobState.RUNNING,
        input={},
        created_at=at,
        attempt=2,
        result={"r": 1},
        error=error,
        progress=0.5,
        owner="alice",
    )
    event = EventBus(MemoryStore(), source="jobwarden://n").event(
        record, "progress", message="halfway", at=at
    )
    assert event == JobEvent(
        id="1",
        source="jobwarden://n",
        type="jobwarden.job.progress",
        subject="job-1",
        time=at,
        data=EventData(
            job_id="job-1",
            tool="demo.echo",
            state=JobState.RUNNING,
            attempt=2,
            progress=0.5,
            message="halfway",
            result={"r": 1},
            error=error,
            owner="alice",
        ),
    )
