"""RedisStore: the shared store conformance suite, plus what only a real Redis can show."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import msgspec
import pytest
import redis
from structlog.testing import capture_logs

from jobwarden import Supervisor, builtin
from jobwarden.actors.states import JobState
from jobwarden.errors import StoreError
from jobwarden.store import JobStore
from jobwarden.store import redis as redis_store
from jobwarden.store.base import EventBounds, JobQuery
from jobwarden.store.redis import RedisStore
from jobwarden.store.redis_keys import LUA_KEYS
from tests.redis_server import URL, keys_under, private_redis
from tests.store.conformance import (
    T0,
    Jobs,
    StoreConformance,
    as_stored_before_retry_at,
    ids,
    list_all,
    offsets,
)


class TestRedisStore(StoreConformance):
    """The conformance suite against a Redis store under a key prefix of its own."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        """redis-py is asyncio-only."""
        return "asyncio"

    @pytest.fixture(autouse=True)
    def _prefix(self, redis_prefix: str) -> None:
        self.prefix = redis_prefix

    async def make_store(self) -> JobStore:
        return RedisStore(f"{URL}?prefix={self.prefix}")


class TestRedisStoreInSmallSteps(TestRedisStore):
    """The conformance suite again, with every scan, read and purge cut into steps of two, so
    the paths that continue a listing, a filtered event read or a purge are all exercised."""

    @pytest.fixture(autouse=True)
    def _small_steps(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("SCAN_BUDGET", "RECORDS_PER_READ", "IDS_PER_PURGE"):
            monkeypatch.setattr(redis_store, name, 2)


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


@pytest.fixture
async def store(redis_prefix: str) -> AsyncIterator[RedisStore]:
    """An opened store under a new prefix, closed after the test."""
    opened = await _opened(redis_prefix)
    yield opened
    await opened.close()


async def _opened(prefix: str, url: str = URL) -> RedisStore:
    store = RedisStore(f"{url}?prefix={prefix}")
    await store.open()
    return store


def _snapshot(prefix: str) -> dict[str, bytes | None]:
    """Every key under ``prefix`` with its serialized value."""
    with redis.Redis.from_url(URL) as client:
        return {key: client.dump(key) for key in keys_under(prefix)}


@pytest.mark.anyio
async def test_lua_and_python_name_the_same_keys(store: RedisStore) -> None:
    """The scripts' key functions produce exactly the keys ``Keys`` names."""
    keys = store.keys
    probe = LUA_KEYS + (
        "return {K.meta, K.all_jobs, K.seq, K.done_at, K.idempotency, K.events, K.job('j'),"
        " K.job_events('j'), K.state('queued'), K.tool('a.b'), K.plugin('a'), K.owner('o:1'),"
        " K.owner_state('o:1', 'running'), K.running('a.b'), K.queue, K.queue_deadlines,"
        " K.control, K.dead}"
    )
    with redis.Redis.from_url(URL) as client:
        names = [n.decode() for n in client.eval(probe, 0, keys.prefix)]
    assert names == [
        keys.meta,
        keys.all_jobs,
        keys.seq,
        keys.done_at,
        keys.idempotency,
        keys.events,
        keys.job("j"),
        keys.job_events("j"),
        keys.state("queued"),
        keys.tool("a.b"),
        keys.plugin("a"),
        keys.owner("o:1"),
        keys.owner_state("o:1", "running"),
        keys.running("a.b"),
        keys.queue,
        keys.queue_deadlines,
        keys.control,
        keys.dead,
    ]


@pytest.mark.anyio
async def test_every_key_is_one_the_layout_names(store: RedisStore) -> None:
    """A job's whole life writes only the keys of the documented layout, all under the prefix."""
    jobs = Jobs()
    done = await jobs.put_finished(store, owner="alice", key="k1", tool="demo.echo")
    k = store.keys
    assert set(keys_under(k.prefix)) == {
        k.meta,
        k.all_jobs,
        k.seq,
        k.done_at,
        k.idempotency,
        k.events,
        k.queue,
        k.job(done.id),
        k.job_events(done.id),
        k.state("succeeded"),
        k.tool("demo.echo"),
        k.plugin("demo"),
        k.owner("alice"),
        k.owner_state("alice", "succeeded"),
    }


@pytest.mark.anyio
async def test_purge_cleans_up_every_key_of_a_job(store: RedisStore) -> None:
    """Purging every finished job leaves only the layout version, the offset, an empty log and
    the (empty) work queue."""
    jobs = Jobs()
    for owner in ("alice", "bob", None):
        await jobs.put_finished(store, owner=owner, key="k", state=JobState.FAILED)
    assert await store.purge(finished_before=None, keep_finished=0) == 3
    keys = store.keys
    assert keys_under(keys.prefix) == sorted([keys.events, keys.meta, keys.queue])
    assert await store.read_events(0, 10) == []
    assert await store.event_bounds() == EventBounds(first=10, last=9)


@pytest.mark.anyio
async def test_purge_trims_the_log_but_never_a_kept_jobs_history(store: RedisStore) -> None:
    """After a purge the history starts later, and every kept job still has all its events."""
    jobs = Jobs()
    old = [await jobs.put_finished(store) for _ in range(3)]  # offsets 1..9
    live = await jobs.put(store)  # 10
    late = await jobs.put_finished(store)  # 11..13
    await jobs.move(store, live, state=JobState.RUNNING)  # 14
    assert await store.purge(finished_before=None, keep_finished=1) == 3
    assert await store.event_bounds() == EventBounds(first=10, last=14)
    assert offsets(await store.read_events(0, 100, job_id=live.id)) == [10, 14]
    assert offsets(await store.read_events(0, 100, job_id=late.id)) == [11, 12, 13]
    for record in old:
        assert await store.read_events(0, 100, job_id=record.id) == []
    assert await store.purge(finished_before=None, keep_finished=0) == 1
    assert await store.event_bounds() == EventBounds(first=10, last=14)


@pytest.mark.anyio
async def test_purge_with_a_zero_limit_removes_nothing(store: RedisStore) -> None:
    """purge(limit=0) removes no job, whichever criteria select some."""
    jobs = Jobs()
    await jobs.put_finished(store)
    far = T0.replace(year=2100)
    assert await store.purge(finished_before=far, keep_finished=0, limit=0) == 0
    assert len(await list_all(store, JobQuery())) == 1


@pytest.mark.anyio
async def test_prefixes_are_isolated(redis_prefix: str) -> None:
    """Two stores under different prefixes of one database share no job, event or key."""
    first = await _opened(redis_prefix + ":a")
    second = await _opened(redis_prefix + ":b")
    try:
        jobs = Jobs()
        mine = await jobs.put(first, owner="alice", key="k")
        theirs = await Jobs().put(second, owner="alice", key="k")
        assert theirs.id != mine.id
        assert await second.get(mine.id) is None
        assert ids(await list_all(first, JobQuery())) == [mine.id]
        assert ids(await list_all(second, JobQuery())) == [theirs.id]
        assert await first.event_bounds() == await second.event_bounds() == EventBounds(1, 1)
        assert await second.purge(finished_before=None, keep_finished=0) == 0
        assert await first.get(mine.id) == mine
    finally:
        await first.close()
        await second.close()


@pytest.mark.anyio
async def test_everything_survives_a_reopen(redis_prefix: str) -> None:
    """Records, events, offsets and idempotency keys are all there after close and open."""
    jobs = Jobs()
    store = await _opened(redis_prefix)
    keyed = await jobs.put(store, owner="alice", key="k1")
    done = await jobs.put_finished(store, input={"text": "kept", "n": [1, 2.5, None]})
    await store.close()
    again = await _opened(redis_prefix)
    try:
        assert await again.get(keyed.id) == keyed
        assert await again.get(done.id) == done
        assert await again.event_bounds() == EventBounds(first=1, last=4)
        duplicate = jobs.record(owner="alice", key="k1")
        assert await again.put(duplicate, jobs.event(duplicate)) == keyed
        assert await again.unfinished() == [keyed]
    finally:
        await again.close()


@pytest.mark.anyio
async def test_a_record_stored_before_retry_at_existed_still_loads(store: RedisStore) -> None:
    """A queued retry whose stored JSON has no retry_at (an earlier jobwarden wrote it) loads
    and is recovered, with retry_at None."""
    jobs = Jobs()
    retried = await jobs.move(store, await jobs.put(store), state=JobState.RUNNING)
    retried = await jobs.move(store, retried, state=JobState.QUEUED, attempt=2)
    with redis.Redis.from_url(URL) as client:
        client.hset(store.keys.job(retried.id), "record", as_stored_before_retry_at(retried))
    assert await store.get(retried.id) == retried
    assert await store.unfinished() == [retried]


@pytest.mark.anyio
async def test_a_damaged_record_fails_only_the_reads_that_return_it(store: RedisStore) -> None:
    """A job record damaged behind the store's back makes get and a listing holding it raise a
    StoreError naming the Redis; other jobs still read."""
    jobs = Jobs()
    kept = await jobs.put_finished(store)
    damaged = await jobs.put(store)
    with redis.Redis.from_url(URL) as client:
        client.hset(store.keys.job(damaged.id), "record", b"\x00")
    says = re.escape(f"{store.url} holds a job record that cannot be read")
    with pytest.raises(StoreError, match=says):
        await store.get(damaged.id)
    with pytest.raises(StoreError, match=says):
        await store.list_jobs(JobQuery())
    with pytest.raises(StoreError, match=says):
        await store.unfinished()
    assert await store.get(kept.id) == kept
    assert (await store.list_jobs(JobQuery(state=kept.state))).jobs == [kept]


@pytest.mark.anyio
async def test_idempotency_survives_a_reconnect() -> None:
    """After Redis drops the store's connections, a reused key still returns the earlier job."""
    with private_redis() as (_, url):
        store = await _opened("jw", url)
        try:
            jobs = Jobs()
            first = await jobs.put(store, owner="alice", key="k1")
            with redis.Redis.from_url(url) as admin:
                assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
            again = jobs.record(owner="alice", key="k1")
            assert await store.put(again, jobs.event(again)) == first
            assert ids(await list_all(store, JobQuery())) == [first.id]
        finally:
            await store.close()


@pytest.mark.anyio
async def test_retried_writes_are_not_applied_twice(store: RedisStore) -> None:
    """A put or transition sent again (a retry after a lost reply) leaves one job, one event."""
    jobs = Jobs()
    record = jobs.record()
    event = jobs.event(record)
    assert await store.put(record, event) == record
    assert await store.put(record, event) == record
    running = msgspec.structs.replace(record, state=JobState.RUNNING)
    moved = jobs.event(running)
    await store.transition(running, moved)
    await store.transition(running, moved)
    assert offsets(await store.read_events(0, 10)) == [1, 2]
    assert await store.get(record.id) == running
    assert ids(await list_all(store, JobQuery(state=JobState.RUNNING))) == [record.id]


@pytest.mark.anyio
async def test_concurrent_writes_share_pipelines_and_keep_their_order(store: RedisStore) -> None:
    """Many writes in flight go out in far fewer pipelines, each offset after the one before."""
    jobs = Jobs()
    records = [jobs.record() for _ in range(200)]
    events = [jobs.event(r) for r in records]
    async with anyio.create_task_group() as tg:
        for record, event in zip(records, events, strict=True):
            tg.start_soon(store.put, record, event)
    stats = store.statistics()
    assert stats.writes == 200
    assert stats.commits < 200
    assert ids(await list_all(store, JobQuery(limit=500))) == ids(records[::-1])
    assert offsets(await store.read_events(0, 500)) == list(range(1, 201))


@pytest.mark.anyio
async def test_a_cancelled_writer_still_completes_its_write(store: RedisStore) -> None:
    """A put begun inside an already cancelled scope still completes: nothing is lost."""
    jobs = Jobs()
    record = jobs.record()
    with anyio.CancelScope() as scope:
        scope.cancel()
        await store.put(record, jobs.event(record))
    assert await store.get(record.id) == record


@pytest.mark.anyio
async def test_a_refused_write_changes_nothing(store: RedisStore, redis_prefix: str) -> None:
    """A second writer numbering offsets the store already has is refused, and writes nothing:
    no record, index or event of the refused put or transition appears."""
    mine = Jobs()
    record = await mine.put_finished(store, owner="alice")  # offsets 1..3
    await mine.put(store)  # 4
    other = await _opened(redis_prefix)
    try:
        before = _snapshot(redis_prefix)
        stale = Jobs()  # numbers from 1 again, as a second node on the prefix would
        fresh = stale.record(owner="bob", key="k")
        with pytest.raises(StoreError, match="another jobwarden node"):
            await other.put(fresh, stale.event(fresh))
        changed = msgspec.structs.replace(record, state=JobState.CANCELLED)
        stale.offset = 3  # the next is 4: not one of the job's own offsets, so not a retry
        with pytest.raises(StoreError, match="is not after the newest stored"):
            await other.transition(changed, stale.event(changed))
        assert _snapshot(redis_prefix) == before
    finally:
        await other.close()


@pytest.mark.anyio
async def test_a_transition_of_an_unknown_job_is_refused(store: RedisStore) -> None:
    """transition() of a job the store does not hold fails with StoreError and logs nothing."""
    jobs = Jobs()
    ghost = jobs.record()
    with pytest.raises(StoreError, match=f"job {ghost.id} is not in the store"):
        await store.transition(ghost, jobs.event(ghost))
    assert await store.event_bounds() == EventBounds(first=1, last=0)


@pytest.mark.anyio
async def test_a_newer_key_layout_is_refused(redis_prefix: str) -> None:
    """Keys written by a newer jobwarden (a higher layout version) stop open() with StoreError."""
    with redis.Redis.from_url(URL) as client:
        client.hset(f"{redis_prefix}:meta", "schema", 99)
    with pytest.raises(StoreError, match="layout version 99, newer than this jobwarden"):
        await _opened(redis_prefix)


@pytest.mark.anyio
async def test_an_old_redis_is_refused(redis_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server older than the commands the store needs stops open() naming its version."""
    monkeypatch.setattr(redis_store, "MIN_VERSION", (99, 0))
    with pytest.raises(StoreError, match=r"is version \d+\.\d+.*needs 99\.0"):
        await _opened(redis_prefix)


@pytest.mark.anyio
async def test_an_unreachable_redis_fails_open_naming_the_url() -> None:
    """With nothing listening, open() raises StoreError naming the URL (without a password)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisStore(f"redis://:hunter2@127.0.0.1:{port}/0?prefix=gone")
    with pytest.raises(
        StoreError, match=f"cannot use the Redis job store at redis://:\\*\\*\\*@127.0.0.1:{port}/0"
    ) as info:
        await store.open()
    assert "hunter2" not in str(info.value)


@pytest.mark.anyio
async def test_every_call_fails_with_store_error_once_redis_is_gone() -> None:
    """When Redis dies under an open store, each read and write raises StoreError naming it."""
    with private_redis() as (process, url):
        store = await _opened("jw", url)
        jobs = Jobs()
        record = await jobs.put(store)
        process.kill()
        process.wait()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: jobs.put(store),
            lambda: store.transition(record, jobs.event(record)),
            lambda: store.get(record.id),
            lambda: store.list_jobs(JobQuery()),
            lambda: store.unfinished(),
            lambda: store.read_events(0, 10),
            lambda: store.read_events(0, 10, tool="demo.echo"),
            lambda: store.event_bounds(),
            lambda: store.purge(finished_before=None, keep_finished=0),
        ]
        for call in calls:
            with pytest.raises(StoreError, match=url.removeprefix("redis://")):
                await call()
        await store.close()


@pytest.mark.anyio
async def test_scripts_lost_by_the_server_are_loaded_again() -> None:
    """After SCRIPT FLUSH (as after a Redis restart) writes, listings and reads still work."""
    with private_redis() as (_, url):
        store = await _opened("jw", url)
        try:
            jobs = Jobs()
            record = await jobs.put(store, tool="alpha.one")
            with redis.Redis.from_url(url) as admin:
                admin.script_flush()
            running = await jobs.move(store, record, state=JobState.RUNNING)
            admin_flush(url)
            assert (await store.list_jobs(JobQuery(tool="alpha.one"))).jobs == [running]
            admin_flush(url)
            assert offsets(await store.read_events(0, 10, tool="alpha.one")) == [1, 2]
        finally:
            await store.close()


def admin_flush(url: str) -> None:
    """Empty the server's script cache."""
    with redis.Redis.from_url(url) as admin:
        admin.script_flush()


@pytest.mark.anyio
async def test_a_redis_without_config_is_used_without_the_aof_check() -> None:
    """Where CONFIG is disabled (managed services), open() skips the AOF check and works."""
    with private_redis("--rename-command", "CONFIG", '""') as (_, url):
        store = await _opened("jw", url)
        try:
            assert await Jobs().put(store) is not None
        finally:
            await store.close()


@pytest.mark.anyio
async def test_a_redis_without_aof_is_warned_about(redis_prefix: str) -> None:
    """Opening a store on a Redis without an append-only file logs one warning saying so."""
    with capture_logs() as logs:
        store = await _opened(redis_prefix)
        await store.close()
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert len(warnings) == 1
    assert "append-only file" in warnings[0]["event"]


@pytest.mark.anyio
async def test_a_closed_store_says_so(redis_prefix: str) -> None:
    """Calls on a store that is not open raise StoreError saying it is not open."""
    store = await _opened(redis_prefix)
    await store.close()
    with pytest.raises(StoreError, match="is not open"):
        await store.get("x")
    with pytest.raises(StoreError, match="is not open"):
        await Jobs().put(store)


@pytest.mark.parametrize("anyio_backend", ["trio"])
@pytest.mark.anyio
async def test_trio_is_refused_clearly(anyio_backend: str) -> None:
    """On trio, open() raises StoreError saying the Redis store runs on asyncio only."""
    with pytest.raises(StoreError, match="asyncio backend only"):
        await RedisStore(URL).open()


@pytest.mark.anyio
async def test_statistics_count_a_supervisors_every_write(redis_prefix: str) -> None:
    """A supervisor's jobs on the Redis store count three writes each (put, running, outcome),
    as on SQLite: the node's transitions were left out (10 writes for 10 jobs)."""
    store = RedisStore(f"{URL}?prefix={redis_prefix}")
    async with Supervisor(plugins=[builtin], store=store, retention=None) as sup:
        for n in range(10):
            await sup.run("builtin.echo", {"text": str(n)})
    stats = store.statistics()
    assert stats.writes == 30
    assert 0 < stats.commits <= stats.writes
