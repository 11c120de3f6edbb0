"""Behaviour every JobStore must show, written once and run against each implementation.

Subclass ``StoreConformance`` in a ``test_*.py`` module, name the subclass ``Test...`` and
implement ``make_store()`` to return a new, empty, not yet opened store::

    class TestMemoryStore(StoreConformance):
        async def make_store(self) -> JobStore:
            return MemoryStore()

The ``store`` fixture opens what ``make_store()`` returns and closes it afterwards. A store that
only runs on asyncio (redis) overrides ``anyio_backend`` in its subclass to pin that backend.
"""

from __future__ import annotations

import abc
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from jobwarden.actors.states import TERMINAL_STATES, JobState
from jobwarden.errors import ErrorInfo, InvalidRequest, StoreError
from jobwarden.ids import new_job_id
from jobwarden.records import EVENT_TYPE_PREFIX, UNSTORABLE, EventData, JobEvent, JobRecord
from jobwarden.store.base import MAX_PAGE, EventBounds, JobPage, JobQuery, JobStore
from tests.fakes import UNDECODABLE

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SOURCE = "jobwarden://conformance"


class Jobs:
    """Makes records and events the way the supervisor does: sortable ids, increasing offsets."""

    def __init__(self) -> None:
        self.offset = 0

    def record(
        self,
        *,
        tool: str = "demo.echo",
        state: JobState = JobState.QUEUED,
        owner: str | None = None,
        key: str | None = None,
        finished_at: datetime | None = None,
        input: Any = None,
    ) -> JobRecord:
        """A new record with a fresh id; the plugin is the tool name's first part."""
        return JobRecord(
            id=new_job_id(),
            tool=tool,
            plugin=tool.split(".")[0],
            state=state,
            input={"n": self.offset} if input is None else input,
            created_at=T0,
            owner=owner,
            idempotency_key=key,
            finished_at=finished_at,
        )

    def event(self, record: JobRecord, *, message: str | None = None) -> JobEvent:
        """The next numbered event, describing ``record``."""
        self.offset += 1
        return JobEvent(
            id=str(self.offset),
            source=SOURCE,
            type=EVENT_TYPE_PREFIX + record.state.value,
            subject=record.id,
            time=T0 + timedelta(seconds=self.offset),
            data=EventData(
                job_id=record.id,
                tool=record.tool,
                state=record.state,
                attempt=record.attempt,
                progress=record.progress,
                message=message,
                result=record.result,
                error=record.error,
            ),
        )

    def abandon(self) -> None:
        """Use up an offset without writing its event, as the bus does for abandoned events."""
        self.offset += 1

    async def put(self, store: JobStore, **fields: Any) -> JobRecord:
        """Create a job in ``store`` (with its first event) and return what the store returned."""
        record = self.record(**fields)
        return await store.put(record, self.event(record))

    async def move(self, store: JobStore, record: JobRecord, **changes: Any) -> JobRecord:
        """Transition ``record`` in ``store`` with ``changes`` applied; return the new record."""
        new = _replace(record, **changes)
        await store.transition(new, self.event(new))
        return new

    async def put_finished(
        self, store: JobStore, *, state: JobState = JobState.SUCCEEDED, **fields: Any
    ) -> JobRecord:
        """Create a job that went queued -> running -> ``state``."""
        finished_at = fields.pop("finished_at", T0)
        record = await self.put(store, **fields)
        record = await self.move(store, record, state=JobState.RUNNING, started_at=T0)
        return await self.move(store, record, state=state, finished_at=finished_at)


def _replace(record: JobRecord, **changes: Any) -> JobRecord:
    return msgspec.structs.replace(record, **changes)


async def list_all(store: JobStore, query: JobQuery) -> list[JobRecord]:
    """Every record the query matches, following cursors; fails on a repeated cursor."""
    seen_cursors: set[str] = set()
    rows: list[JobRecord] = []
    while True:
        page = await store.list_jobs(query)
        rows.extend(page.jobs)
        if page.next_cursor is None:
            return rows
        assert page.jobs, "a page with a next cursor must not be empty"
        assert page.next_cursor not in seen_cursors
        seen_cursors.add(page.next_cursor)
        query = JobQuery(
            state=query.state,
            tool=query.tool,
            plugin=query.plugin,
            owner=query.owner,
            limit=query.limit,
            cursor=page.next_cursor,
        )


def as_stored_before_retry_at(record: JobRecord) -> bytes:
    """``record``'s JSON as a jobwarden from before ``JobRecord.retry_at`` stored it."""
    fields = msgspec.to_builtins(record)
    del fields["retry_at"]
    return msgspec.json.encode(fields)


def ids(records: list[JobRecord]) -> list[str]:
    """The ids of ``records``, in order."""
    return [r.id for r in records]


def offsets(events: list[JobEvent]) -> list[int]:
    """The offsets of ``events``, in order."""
    return [e.offset for e in events]


class StoreConformance(abc.ABC):
    """The shared behaviour tests; subclasses provide ``make_store()``."""

    orders_by_id = True
    """False for a store that lists and recovers jobs in the order it stored them (SQLite):
    the same order for the Supervisor's jobs, whose ids rise as they are stored."""

    @abc.abstractmethod
    async def make_store(self) -> JobStore:
        """A new, empty store, not yet opened."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[JobStore]:
        """An opened store, closed after the test."""
        store = await self.make_store()
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    @pytest.fixture
    def jobs(self) -> Jobs:
        """A record and event factory with its own offset counter."""
        return Jobs()

    # --- basics -----------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_open_use_close(self) -> None:
        """A store opens, works, and closes; it satisfies the JobStore protocol."""
        store = await self.make_store()
        assert isinstance(store, JobStore)
        assert isinstance(store.durable, bool)
        await store.open()
        record = await Jobs().put(store)
        assert await store.get(record.id) == record
        await store.close()

    @pytest.mark.anyio
    async def test_empty_store(self, store: JobStore) -> None:
        """A new store has no jobs, no unfinished jobs and no events."""
        assert await store.get(new_job_id()) is None
        assert await store.list_jobs(JobQuery()) == JobPage(jobs=[], next_cursor=None)
        assert await store.unfinished() == []
        assert await store.read_events(0, 100) == []

    @pytest.mark.anyio
    async def test_put_then_get(self, store: JobStore, jobs: Jobs) -> None:
        """put() returns the record it stored, and get() returns an equal record."""
        record = jobs.record(owner="alice", input={"text": "hi", "nested": [1, {"a": None}]})
        stored = await store.put(record, jobs.event(record))
        assert stored == record
        assert await store.get(record.id) == record

    @pytest.mark.anyio
    async def test_get_unknown_id_is_none(self, store: JobStore, jobs: Jobs) -> None:
        """get() of an id never stored is None."""
        await jobs.put(store)
        assert await store.get(new_job_id()) is None

    @pytest.mark.anyio
    async def test_put_appends_the_first_event(self, store: JobStore, jobs: Jobs) -> None:
        """put() writes the job's first event to the log."""
        record = jobs.record()
        event = jobs.event(record)
        await store.put(record, event)
        assert await store.read_events(0, 10) == [event]
        assert await store.event_bounds() == EventBounds(first=1, last=1)

    # --- idempotency --------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_same_owner_and_key_returns_the_existing_job(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """Reusing an owner's idempotency key writes nothing and returns the earlier job."""
        first = await jobs.put(store, owner="alice", key="k1")
        bounds = await store.event_bounds()
        second = jobs.record(owner="alice", key="k1", input={"other": True})
        returned = await store.put(second, jobs.event(second))
        assert returned == first
        assert await store.get(second.id) is None
        assert await store.event_bounds() == bounds
        assert offsets(await store.read_events(0, 10)) == [1]
        assert ids(await list_all(store, JobQuery())) == [first.id]

    @pytest.mark.anyio
    async def test_existing_job_is_returned_in_its_current_state(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """The record returned for a reused key is the job's latest record, not its first."""
        first = await jobs.put(store, owner="alice", key="k1")
        running = await jobs.move(store, first, state=JobState.RUNNING, started_at=T0)
        again = jobs.record(owner="alice", key="k1")
        assert await store.put(again, jobs.event(again)) == running

    @pytest.mark.anyio
    async def test_same_key_for_another_owner_is_a_new_job(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """Idempotency keys are per owner: the same key under another owner makes a new job."""
        alice = await jobs.put(store, owner="alice", key="k1")
        bob = await jobs.put(store, owner="bob", key="k1")
        anonymous = await jobs.put(store, owner=None, key="k1")
        assert len({alice.id, bob.id, anonymous.id}) == 3
        for record in (alice, bob, anonymous):
            assert await store.get(record.id) == record
        assert (await store.event_bounds()).last == 3

    @pytest.mark.anyio
    async def test_anonymous_owner_key_is_idempotent_too(self, store: JobStore, jobs: Jobs) -> None:
        """Without an owner, the key alone still identifies the earlier job."""
        first = await jobs.put(store, key="k1")
        again = jobs.record(key="k1")
        assert await store.put(again, jobs.event(again)) == first

    @pytest.mark.anyio
    async def test_no_key_never_deduplicates(self, store: JobStore, jobs: Jobs) -> None:
        """Jobs without an idempotency key are always created."""
        a = await jobs.put(store, owner="alice")
        b = await jobs.put(store, owner="alice")
        assert a.id != b.id
        assert len(await list_all(store, JobQuery())) == 2

    @pytest.mark.anyio
    @pytest.mark.parametrize(
        "part", ["input", "owner", "key", "deep input", "cyclic input", "object input"]
    )
    async def test_a_put_no_json_can_hold_raises_and_stores_nothing(
        self, store: JobStore, jobs: Jobs, part: str
    ) -> None:
        """put() of a job whose input, owner or idempotency key no JSON can hold (a lone
        surrogate; an input nested too deeply, holding itself or holding an object) raises one
        of UNSTORABLE and stores neither the job, its event nor its key."""
        kept = await jobs.put(store, owner="alice", key="k1")
        fields: dict[str, Any] = {"owner": "alice", "key": "k2", "input": {"text": "hi"}}
        deep: list[Any] = []
        for _ in range(5000):
            deep = [deep]
        cyclic: list[Any] = []
        cyclic.append(cyclic)
        refusals: dict[str, tuple[str, Any]] = {
            "input": ("input", {"text": UNDECODABLE}),
            "owner": ("owner", UNDECODABLE),
            "key": ("key", UNDECODABLE),
            "deep input": ("input", {"list": deep}),
            "cyclic input": ("input", {"list": cyclic}),
            "object input": ("input", {"thing": object()}),
        }
        name, value = refusals[part]
        fields[name] = value
        refused = jobs.record(**fields)
        with pytest.raises(UNSTORABLE):
            await store.put(refused, jobs.event(refused))
        assert await store.get(refused.id) is None
        assert await list_all(store, JobQuery()) == [kept]
        assert offsets(await store.read_events(0, 10)) == [1]
        again = await jobs.put(store, owner="alice", key="k2")
        assert await store.get(again.id) == again

    # --- transition -----------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_transition_replaces_the_record_and_appends_the_event(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """transition() makes the new record current and logs its event after the earlier ones."""
        record = await jobs.put(store)
        running = _replace(record, state=JobState.RUNNING, started_at=T0)
        event = jobs.event(running)
        await store.transition(running, event)
        assert await store.get(record.id) == running
        events = await store.read_events(0, 10)
        assert offsets(events) == [1, 2]
        assert events[-1] == event
        error = ErrorInfo(type="plugin_error", message="boom", timestamp=T0)
        failed = await jobs.move(
            store, running, state=JobState.FAILED, error=error, finished_at=T0, progress=0.5
        )
        assert await store.get(record.id) == failed
        assert (await store.event_bounds()).last == 3

    @pytest.mark.anyio
    async def test_a_transition_of_an_unknown_job_is_refused_and_writes_nothing(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """transition() of a job the store does not hold raises StoreError naming it, stores
        neither its record nor its event, and leaves the store usable."""
        kept = await jobs.put(store)
        stranger = _replace(jobs.record(), state=JobState.SUCCEEDED, finished_at=T0)
        with pytest.raises(StoreError, match=stranger.id):
            await store.transition(stranger, jobs.event(stranger))
        assert await store.get(stranger.id) is None
        assert [event.subject for event in await store.read_events(0, 10)] == [kept.id]
        assert await list_all(store, JobQuery()) == [kept]
        running = await jobs.move(store, kept, state=JobState.RUNNING, started_at=T0)
        assert await store.get(kept.id) == running
        assert offsets(await store.read_events(0, 10)) == [1, 3]

    # --- listing ----------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_list_jobs_newest_first(self, store: JobStore, jobs: Jobs) -> None:
        """list_jobs returns jobs newest first, with current records."""
        made = [await jobs.put(store) for _ in range(5)]
        made[2] = await jobs.move(store, made[2], state=JobState.RUNNING)
        page = await store.list_jobs(JobQuery())
        assert page.jobs == made[::-1]
        assert page.next_cursor is None

    @pytest.mark.anyio
    async def test_jobs_stored_out_of_id_order(self, store: JobStore, jobs: Jobs) -> None:
        """Jobs stored out of creation order are listed newest first and recovered oldest first,
        by id (or, where ``orders_by_id`` is False, by when they were stored)."""
        made = [jobs.record() for _ in range(4)]
        for index in (2, 0, 3, 1):
            await store.put(made[index], jobs.event(made[index]))
        oldest_first = made if self.orders_by_id else [made[i] for i in (2, 0, 3, 1)]
        assert (await store.list_jobs(JobQuery())).jobs == oldest_first[::-1]
        assert ids(await list_all(store, JobQuery(limit=1))) == ids(oldest_first[::-1])
        assert await store.unfinished() == oldest_first

    @pytest.mark.anyio
    async def test_list_jobs_filters_combine(self, store: JobStore, jobs: Jobs) -> None:
        """state, tool, plugin and owner filters each narrow the listing and combine with AND."""
        tools = ["alpha.one", "alpha.two", "beta.one"]
        owners = [None, "alice", "bob"]
        states = [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED]
        made: list[JobRecord] = []
        for made_tool, made_owner, made_state in itertools.product(tools, owners, states):
            made.append(await jobs.put(store, tool=made_tool, owner=made_owner, state=made_state))
        newest_first = made[::-1]
        for state, tool, plugin, owner in itertools.product(
            [None, *JobState], [None, *tools, "ghost.x"], [None, "alpha", "beta"], owners
        ):
            query = JobQuery(state=state, tool=tool, plugin=plugin, owner=owner, limit=MAX_PAGE)
            expected = [
                r
                for r in newest_first
                if (state is None or r.state == state)
                and (tool is None or r.tool == tool)
                and (plugin is None or r.plugin == plugin)
                and (owner is None or r.owner == owner)
            ]
            page = await store.list_jobs(query)
            assert page.jobs == expected, query
            assert page.next_cursor is None

    @pytest.mark.anyio
    async def test_list_jobs_limit(self, store: JobStore, jobs: Jobs) -> None:
        """limit caps the page; the page carries a cursor when more rows match."""
        made = [await jobs.put(store) for _ in range(7)]
        page = await store.list_jobs(JobQuery(limit=3))
        assert ids(page.jobs) == ids(made[::-1][:3])
        assert page.next_cursor is not None

    @pytest.mark.anyio
    @pytest.mark.parametrize("limit", [0, -5])
    async def test_list_jobs_limit_below_one_means_one(
        self, store: JobStore, jobs: Jobs, limit: int
    ) -> None:
        """A limit below 1 is clamped to 1."""
        made = [await jobs.put(store) for _ in range(3)]
        page = await store.list_jobs(JobQuery(limit=limit))
        assert ids(page.jobs) == [made[-1].id]
        assert page.next_cursor is not None

    @pytest.mark.anyio
    async def test_list_jobs_limit_above_max_page_is_clamped(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """A limit above MAX_PAGE returns at most MAX_PAGE rows, with a cursor for the rest."""
        made = [await jobs.put(store) for _ in range(MAX_PAGE + 2)]
        page = await store.list_jobs(JobQuery(limit=MAX_PAGE * 10))
        assert len(page.jobs) == MAX_PAGE
        assert ids(page.jobs) == ids(made[::-1][:MAX_PAGE])
        assert page.next_cursor is not None
        rest = await store.list_jobs(JobQuery(limit=MAX_PAGE, cursor=page.next_cursor))
        assert ids(rest.jobs) == ids(made[:2][::-1])
        assert rest.next_cursor is None

    @pytest.mark.anyio
    @pytest.mark.parametrize("cursor", ["", "abc", "zzz", "-1", "A" * 32, "g" * 32, "0" * 33])
    async def test_a_cursor_no_store_gives_out_is_an_invalid_request(
        self, store: JobStore, jobs: Jobs, cursor: str
    ) -> None:
        """A cursor that is neither a job id nor (SQLite) a seq is refused with InvalidRequest
        (a 400), not read as a bound that lists everything or nothing."""
        await jobs.put(store)
        with pytest.raises(InvalidRequest, match="is not a next_cursor this server gave out"):
            await store.list_jobs(JobQuery(cursor=cursor))

    @pytest.mark.anyio
    @pytest.mark.parametrize("limit", [1, 3, 5, 7, 23, 24])
    async def test_cursor_pagination_visits_every_job_once(
        self, store: JobStore, jobs: Jobs, limit: int
    ) -> None:
        """Following next_cursor walks every job exactly once, newest first, ending with None."""
        made = [await jobs.put(store) for _ in range(23)]
        query = JobQuery(limit=limit)
        pages: list[JobPage] = []
        while True:
            page = await store.list_jobs(query)
            pages.append(page)
            if page.next_cursor is None:
                break
            query = JobQuery(limit=limit, cursor=page.next_cursor)
        walked = [r for p in pages for r in p.jobs]
        assert ids(walked) == ids(made[::-1])
        assert all(len(p.jobs) == limit for p in pages[:-1])
        assert 1 <= len(pages[-1].jobs) <= limit
        assert len(pages) == -(-len(made) // limit)

    @pytest.mark.anyio
    async def test_last_page_that_fills_exactly_has_no_cursor(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """When the remaining rows fill the page exactly, next_cursor is None (no empty page)."""
        made = [await jobs.put(store) for _ in range(10)]
        first = await store.list_jobs(JobQuery(limit=5))
        assert first.next_cursor is not None
        second = await store.list_jobs(JobQuery(limit=5, cursor=first.next_cursor))
        assert ids(second.jobs) == ids(made[:5][::-1])
        assert second.next_cursor is None
        whole = await store.list_jobs(JobQuery(limit=10))
        assert whole.next_cursor is None

    @pytest.mark.anyio
    async def test_filtered_pagination(self, store: JobStore, jobs: Jobs) -> None:
        """Cursors work together with filters: every matching job once, no others."""
        made = [await jobs.put(store, owner="alice" if i % 3 else "bob") for i in range(20)]
        alice = [r for r in made[::-1] if r.owner == "alice"]
        walked = await list_all(store, JobQuery(owner="alice", limit=4))
        assert ids(walked) == ids(alice)

    @pytest.mark.anyio
    async def test_pagination_is_stable_while_jobs_are_added(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """Jobs created after the first page do not shift later pages (no duplicates, no gaps)."""
        made = [await jobs.put(store) for _ in range(6)]
        first = await store.list_jobs(JobQuery(limit=3))
        assert first.next_cursor is not None
        for _ in range(4):
            await jobs.put(store)
        second = await store.list_jobs(JobQuery(limit=3, cursor=first.next_cursor))
        assert ids(first.jobs) + ids(second.jobs) == ids(made[::-1])

    # --- unfinished ---------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_unfinished_is_queued_and_running_oldest_first(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """unfinished() returns exactly the queued and running jobs, oldest first, as current
        (a retry with the time it was queued again)."""
        queued = await jobs.put(store)
        done = await jobs.put_finished(store)
        running = await jobs.move(store, await jobs.put(store), state=JobState.RUNNING)
        await jobs.put_finished(store, state=JobState.CANCELLED)
        retried = await jobs.move(store, await jobs.put(store), state=JobState.RUNNING)
        retried = await jobs.move(
            store, retried, state=JobState.QUEUED, attempt=2, retry_at=T0 + timedelta(seconds=5)
        )
        await jobs.put_finished(store, state=JobState.TIMED_OUT)
        await jobs.put_finished(store, state=JobState.FAILED)
        unfinished = await store.unfinished()
        assert unfinished == [queued, running, retried]
        assert done not in unfinished

    # --- events -------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_read_events_after_and_limit(self, store: JobStore, jobs: Jobs) -> None:
        """read_events returns up to ``limit`` events with offset > ``after``, in offset order."""
        for _ in range(4):
            await jobs.put_finished(store)  # three events each: offsets 1..12
        assert offsets(await store.read_events(0, 100)) == list(range(1, 13))
        assert offsets(await store.read_events(5, 100)) == list(range(6, 13))
        assert offsets(await store.read_events(5, 3)) == [6, 7, 8]
        assert offsets(await store.read_events(11, 100)) == [12]
        assert await store.read_events(12, 100) == []
        assert await store.read_events(99, 100) == []
        assert await store.read_events(0, 0) == []
        assert offsets(await store.read_events(-10, 2)) == [1, 2]

    @pytest.mark.anyio
    async def test_read_events_by_job_and_tool(self, store: JobStore, jobs: Jobs) -> None:
        """job_id and tool filters select matching events, still in offset order and limited."""
        a = await jobs.put(store, tool="alpha.one")  # 1
        b = await jobs.put(store, tool="beta.one")  # 2
        a = await jobs.move(store, a, state=JobState.RUNNING)  # 3
        c = await jobs.put(store, tool="alpha.one")  # 4
        b = await jobs.move(store, b, state=JobState.RUNNING)  # 5
        await jobs.move(store, a, state=JobState.SUCCEEDED)  # 6
        await jobs.move(store, c, state=JobState.CANCELLED)  # 7
        by_a = await store.read_events(0, 100, job_id=a.id)
        assert offsets(by_a) == [1, 3, 6]
        assert all(e.subject == a.id and e.data.job_id == a.id for e in by_a)
        assert offsets(await store.read_events(0, 100, tool="alpha.one")) == [1, 3, 4, 6, 7]
        assert offsets(await store.read_events(3, 2, tool="alpha.one")) == [4, 6]
        assert offsets(await store.read_events(0, 100, job_id=b.id, tool="beta.one")) == [2, 5]
        assert await store.read_events(0, 100, job_id=b.id, tool="alpha.one") == []
        assert await store.read_events(0, 100, job_id=new_job_id()) == []

    @pytest.mark.anyio
    async def test_events_round_trip(self, store: JobStore, jobs: Jobs) -> None:
        """Events come back equal to what was written, message, result and error included."""
        record = await jobs.put(store)
        running = _replace(record, state=JobState.RUNNING, progress=0.25)
        progress = jobs.event(running, message="a quarter")
        await store.transition(running, progress)
        error = ErrorInfo(type="timeout", message="too slow", details={"s": 5}, timestamp=T0)
        ended = _replace(running, state=JobState.TIMED_OUT, error=error, finished_at=T0)
        timed_out = jobs.event(ended)
        await store.transition(ended, timed_out)
        events = await store.read_events(1, 10)
        assert events == [progress, timed_out]
        assert events[0].data.message == "a quarter"
        assert events[1].data.error == error

    @pytest.mark.anyio
    async def test_read_events_with_offset_gaps(self, store: JobStore, jobs: Jobs) -> None:
        """Offsets the bus abandoned leave gaps; reads after any offset still miss nothing."""
        first = await jobs.put(store, owner="alice", key="k")  # 1
        duplicate = jobs.record(owner="alice", key="k")
        await store.put(duplicate, jobs.event(duplicate))  # 2: not written, the key was used
        await jobs.put(store)  # 3
        jobs.abandon()  # 4: a write that failed
        jobs.abandon()  # 5
        await jobs.move(store, first, state=JobState.RUNNING)  # 6
        await jobs.put(store)  # 7
        written = [1, 3, 6, 7]
        assert offsets(await store.read_events(0, 100)) == written
        for after in range(9):
            expected = [o for o in written if o > after]
            assert offsets(await store.read_events(after, 100)) == expected, after
            assert offsets(await store.read_events(after, 1)) == expected[:1], after
        assert await store.event_bounds() == EventBounds(first=1, last=7)

    @pytest.mark.anyio
    async def test_event_bounds_of_an_empty_store(self, store: JobStore) -> None:
        """With no events, event_bounds() has first > last."""
        bounds = await store.event_bounds()
        assert bounds.first > bounds.last
        assert bounds.last == 0

    @pytest.mark.anyio
    async def test_event_bounds_follow_appends(self, store: JobStore, jobs: Jobs) -> None:
        """event_bounds() spans the first to the newest retained offset."""
        record = await jobs.put(store)
        assert await store.event_bounds() == EventBounds(first=1, last=1)
        await jobs.move(store, record, state=JobState.RUNNING)
        await jobs.put(store)
        assert await store.event_bounds() == EventBounds(first=1, last=3)

    @pytest.mark.anyio
    async def test_event_bounds_start_where_the_offsets_start(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """When the first written offset is not 1, the bounds start there."""
        for _ in range(40):
            jobs.abandon()
        await jobs.put(store)
        await jobs.put(store)
        assert await store.event_bounds() == EventBounds(first=41, last=42)
        assert offsets(await store.read_events(0, 10)) == [41, 42]
        assert offsets(await store.read_events(41, 10)) == [42]

    # --- purge --------------------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_purge_keep_finished(self, store: JobStore, jobs: Jobs) -> None:
        """keep_finished=N deletes all but the newest N finished jobs and leaves the rest alone."""
        old = [await jobs.put_finished(store, state=s) for s in sorted(TERMINAL_STATES)]
        queued = await jobs.put(store)
        running = await jobs.move(store, await jobs.put(store), state=JobState.RUNNING)
        new = [await jobs.put_finished(store) for _ in range(2)]
        removed = await store.purge(finished_before=None, keep_finished=2)
        assert removed == len(old)
        for record in old:
            assert await store.get(record.id) is None
        remaining = await list_all(store, JobQuery())
        assert ids(remaining) == ids([new[1], new[0], running, queued])
        assert await store.unfinished() == [queued, running]

    @pytest.mark.anyio
    async def test_purge_keep_zero_removes_every_finished_job(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """keep_finished=0 removes every finished job and no unfinished one."""
        queued = await jobs.put(store)
        for _ in range(3):
            await jobs.put_finished(store, state=JobState.FAILED)
        running = await jobs.move(store, await jobs.put(store), state=JobState.RUNNING)
        assert await store.purge(finished_before=None, keep_finished=0) == 3
        assert ids(await list_all(store, JobQuery())) == [running.id, queued.id]

    @pytest.mark.anyio
    async def test_purge_keep_more_than_exist_removes_nothing(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """keep_finished larger than the number of finished jobs removes nothing."""
        for _ in range(3):
            await jobs.put_finished(store)
        assert await store.purge(finished_before=None, keep_finished=10) == 0
        assert len(await list_all(store, JobQuery())) == 3

    @pytest.mark.anyio
    async def test_purge_finished_before(self, store: JobStore, jobs: Jobs) -> None:
        """finished_before deletes finished jobs that ended strictly before the cutoff only."""
        cutoff = T0 + timedelta(hours=1)
        early = await jobs.put_finished(store, finished_at=T0)
        at_cutoff = await jobs.put_finished(store, finished_at=cutoff)
        later = await jobs.put_finished(
            store, state=JobState.CANCELLED, finished_at=cutoff + timedelta(seconds=1)
        )
        queued = await jobs.put(store)
        running = await jobs.move(
            store, await jobs.put(store), state=JobState.RUNNING, started_at=T0
        )
        removed = await store.purge(finished_before=cutoff, keep_finished=None)
        assert removed == 1
        assert await store.get(early.id) is None
        for record in (at_cutoff, later, queued, running):
            assert await store.get(record.id) == record

    @pytest.mark.anyio
    async def test_purge_never_removes_unfinished_jobs(self, store: JobStore, jobs: Jobs) -> None:
        """However aggressive the purge, queued and running jobs survive it."""
        queued = await jobs.put(store)
        running = await jobs.move(store, await jobs.put(store), state=JobState.RUNNING)
        retried = await jobs.move(store, await jobs.put(store), state=JobState.RUNNING)
        retried = await jobs.move(
            store, retried, state=JobState.QUEUED, attempt=2, retry_at=T0 + timedelta(seconds=5)
        )
        await jobs.put_finished(store)
        far_future = T0 + timedelta(days=36_500)
        assert await store.purge(finished_before=far_future, keep_finished=0) == 1
        assert await store.unfinished() == [queued, running, retried]

    @pytest.mark.anyio
    async def test_purge_with_both_criteria_removes_the_union(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """With both criteria, a finished job goes if either one selects it, and is counted once."""
        cutoff = T0 + timedelta(hours=1)
        oldest = await jobs.put_finished(store, finished_at=cutoff + timedelta(minutes=5))
        middle = await jobs.put_finished(store, finished_at=T0)  # early, and beyond newest 1
        newest = await jobs.put_finished(store, finished_at=T0)  # early, but the newest
        removed = await store.purge(finished_before=cutoff, keep_finished=1)
        assert removed == 3
        for record in (oldest, middle, newest):
            assert await store.get(record.id) is None

    @pytest.mark.anyio
    async def test_purge_limit_takes_the_oldest_first(self, store: JobStore, jobs: Jobs) -> None:
        """A purge with a limit removes at most that many jobs, the oldest first; the next
        purges go on from there."""
        finished = [await jobs.put_finished(store) for _ in range(5)]
        queued = await jobs.put(store)
        removed = [await store.purge(finished_before=None, keep_finished=0, limit=2)]
        assert [await store.get(r.id) for r in finished[:2]] == [None, None]
        assert ids(await list_all(store, JobQuery())) == ids([queued, *finished[:1:-1]])
        removed += [await store.purge(finished_before=None, keep_finished=0, limit=2)]
        removed += [await store.purge(finished_before=None, keep_finished=0, limit=2)]
        assert removed == [2, 2, 1]
        assert ids(await list_all(store, JobQuery())) == [queued.id]

    @pytest.mark.anyio
    async def test_purge_limit_orders_both_criteria_together(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """With both criteria and a limit, the oldest of the jobs either one selects go first."""
        cutoff = T0 + timedelta(hours=1)
        late = cutoff + timedelta(minutes=5)
        beyond = await jobs.put_finished(store, finished_at=late)  # beyond the newest 3
        early = [
            await jobs.put_finished(store, finished_at=T0 + timedelta(minutes=m)) for m in (2, 1)
        ]
        kept = await jobs.put_finished(store, finished_at=late)
        assert await store.purge(finished_before=cutoff, keep_finished=3, limit=2) == 2
        assert [await store.get(r.id) for r in (beyond, early[0])] == [None, None]
        assert await store.purge(finished_before=cutoff, keep_finished=3, limit=2) == 1
        assert ids(await list_all(store, JobQuery())) == [kept.id]

    @pytest.mark.anyio
    async def test_purge_limit_zero_removes_nothing(self, store: JobStore, jobs: Jobs) -> None:
        """A limit of 0 removes nothing, whatever the criteria select."""
        await jobs.put_finished(store)
        far_future = T0 + timedelta(days=36_500)
        assert await store.purge(finished_before=far_future, keep_finished=0, limit=0) == 0
        assert len(await list_all(store, JobQuery())) == 1

    @pytest.mark.anyio
    async def test_purge_with_no_criteria_removes_nothing(
        self, store: JobStore, jobs: Jobs
    ) -> None:
        """purge() without criteria deletes nothing and returns 0."""
        await jobs.put_finished(store)
        assert await store.purge(finished_before=None, keep_finished=None) == 0
        assert len(await list_all(store, JobQuery())) == 1

    @pytest.mark.anyio
    async def test_purge_frees_idempotency_keys(self, store: JobStore, jobs: Jobs) -> None:
        """After its job is purged, an idempotency key makes a new job again."""
        first = await jobs.put_finished(store, owner="alice", key="k")
        kept = await jobs.put(store, owner="alice", key="live")
        assert await store.purge(finished_before=None, keep_finished=0) == 1
        fresh = await jobs.put(store, owner="alice", key="k")
        assert fresh.id != first.id
        assert await store.get(fresh.id) == fresh
        again = jobs.record(owner="alice", key="live")
        assert await store.put(again, jobs.event(again)) == kept
