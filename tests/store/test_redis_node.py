"""A cluster node's writes ride out a lost connection (and a lost script cache) for a while, then
fail clearly; a consumer group that cannot be created stops the store from opening."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from structlog.testing import capture_logs

from jobwarden import JobState
from jobwarden.errors import StoreError
from jobwarden.store import redis_node
from jobwarden.store.redis import RedisStore, ScriptCall
from jobwarden.store.redis_node import RedisNode
from jobwarden.store.redis_queue_scripts import GROUP
from jobwarden.store.redis_url import RedisSettings
from jobwarden.store.shared import Verdict
from tests.redis_server import URL
from tests.store.conformance import Jobs


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


class ScriptedStore:
    """The parts of a RedisStore a node's writes use; ``pipeline`` answers from ``plan``: an
    exception to raise, a list of replies, or one reply for every write."""

    def __init__(self, plan: list[Any]) -> None:
        self.plan = plan
        self.settings = RedisSettings(prefix="fake")
        self.keys = RedisStore(self.settings).keys
        self.url = self.settings.url
        self.sent = 0
        self.reloads = 0

    async def pipeline(self, writes: list[ScriptCall], *, transaction: bool = True) -> list[Any]:
        self.sent += 1
        step = self.plan.pop(0)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, list):
            return step
        return [step] * len(writes)

    async def load_scripts(self) -> None:
        self.reloads += 1


def node_on(store: ScriptedStore) -> RedisNode:
    return RedisNode(store, "n1")  # type: ignore[arg-type]


def call() -> ScriptCall:
    return ScriptCall("transition", [])


@pytest.mark.anyio
async def test_a_write_is_retried_until_the_connection_is_back() -> None:
    """Lost connections are retried with backoff; the write then completes with its reply."""
    store = ScriptedStore([RedisConnectionError("gone"), RedisConnectionError("gone"), b"new"])
    write = call()
    await node_on(store)._commit_changes([write])
    assert (store.sent, write.reply) == (3, b"new")


@pytest.mark.anyio
async def test_a_write_fails_once_redis_stayed_away_too_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past ``RECONNECT_S`` without Redis, the write fails with a StoreError saying so."""
    monkeypatch.setattr(redis_node, "RECONNECT_S", 0.0)
    store = ScriptedStore([RedisConnectionError("gone")])
    with pytest.raises(StoreError, match="unreachable for 0s"):
        await node_on(store)._commit_changes([call()])


@pytest.mark.anyio
async def test_a_lost_script_cache_is_reloaded_and_the_write_redone() -> None:
    """A NOSCRIPT reply makes the node load the scripts again and send the batch once more."""
    store = ScriptedStore([[NoScriptError("NOSCRIPT")], b"stored"])
    write = call()
    await node_on(store)._commit_changes([write])
    assert (store.sent, store.reloads, write.reply) == (2, 1, b"stored")


@pytest.mark.anyio
async def test_other_redis_errors_fail_the_write_at_once() -> None:
    """An error that is not a lost connection is not retried."""
    store = ScriptedStore([ResponseError("WRONGTYPE")])
    with pytest.raises(StoreError, match="WRONGTYPE"):
        await node_on(store)._commit_changes([call()])
    assert store.sent == 1


@pytest.mark.anyio
async def test_a_refused_change_is_a_store_error(redis_prefix: str) -> None:
    """A change the script refuses (Redis answers an error) raises StoreError."""
    store = RedisStore(f"{URL}?prefix={redis_prefix}", node="n1")
    await store.open()
    try:
        jobs = Jobs()
        record = jobs.record()
        running = msgspec.structs.replace(record, state=JobState.RUNNING)
        with redis.Redis.from_url(URL) as client:
            client.set(store.keys.job(record.id), "not a hash")
        with pytest.raises(StoreError, match="refused a write"):
            await store.shared.change(record, running, jobs.event(running))
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_change_of_a_job_redis_lost_is_stale(redis_prefix: str) -> None:
    """A change of a job whose record is not in the store (Redis lost it) is stale, so the node
    lets the job go, and writes nothing."""
    store = RedisStore(f"{URL}?prefix={redis_prefix}", node="n1")
    await store.open()
    try:
        jobs = Jobs()
        record = jobs.record()
        running = msgspec.structs.replace(record, state=JobState.RUNNING)
        verdict = await store.shared.change(record, running, jobs.event(running))
        assert verdict is Verdict.STALE
        assert await store.get(record.id) is None
        assert (await store.event_bounds()).last == 0
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_dead_letter_note_is_made_by_the_change_that_fails_the_job(
    redis_prefix: str,
) -> None:
    """The note in ``<p>:dead`` is written with the failure, in one script: once, even when the
    write is retried, and not at all when the change is stale."""
    store = RedisStore(f"{URL}?prefix={redis_prefix}", node="n1")
    await store.open()
    try:
        jobs = Jobs()
        record = jobs.record()
        await store.shared.enqueue(record, jobs.event(record), max_queued=10)
        failed = msgspec.structs.replace(record, state=JobState.FAILED)
        event = jobs.event(failed)
        with redis.Redis.from_url(URL) as client:
            assert client.xlen(store.keys.dead) == 0
            for _ in range(2):  # the second is a retried write: stored already
                verdict = await store.shared.change(record, failed, event, dead_letter=3)
                assert verdict is Verdict.DONE
            running = msgspec.structs.replace(record, state=JobState.RUNNING)
            again = msgspec.structs.replace(running, state=JobState.FAILED, attempt=2)
            stale = await store.shared.change(running, again, jobs.event(again), dead_letter=4)
            assert stale is Verdict.STALE
            notes = [fields for _, fields in client.xrange(store.keys.dead)]
        assert notes == [{b"job": record.id.encode(), b"deliveries": b"3", b"node": b"n1"}]
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_key_in_the_way_of_the_queue_stops_the_store_opening(redis_prefix: str) -> None:
    """If the queue's key holds something else, opening fails with a clear StoreError."""
    with redis.Redis.from_url(URL) as client:
        client.set(f"{redis_prefix}:queue", "not a stream")
    store = RedisStore(f"{URL}?prefix={redis_prefix}", node="n1")
    with pytest.raises(StoreError, match="cannot use the Redis job store"):
        await store.open()


@pytest.mark.anyio
async def test_an_event_that_cannot_be_read_is_skipped_by_a_follower(redis_prefix: str) -> None:
    """A damaged entry in the shared log is logged and skipped, the events around it delivered,
    and ``through`` moves the follower past it; a damaged cancel request is skipped too. Before,
    the follower raised at that entry on every try: the node never saw another event."""
    store = RedisStore(f"{URL}?prefix={redis_prefix}", node="n1")
    await store.open()
    try:
        jobs = Jobs()
        record = jobs.record()
        first = jobs.event(record)
        jobs.offset = 3
        second = jobs.event(record)
        encode = msgspec.json.encode
        keys = store.keys
        with redis.Redis.from_url(URL) as client:
            client.xadd(keys.events, {"job": record.id, "tool": "t", "body": encode(first)}, "1-0")
            client.xadd(keys.events, {"job": record.id, "tool": "t", "body": b"\x00"}, "2-0")
            client.xadd(keys.events, {"job": record.id, "tool": "t", "body": encode(second)}, "4-0")
            client.xadd(keys.events, {"job": record.id, "tool": "t"}, "7-0")
            client.xadd(keys.control, {"op": "cancel"})
            client.xadd(keys.control, {"op": "cancel", "job": record.id})
        with capture_logs() as logs:
            followed = await store.shared.follow(0, block_s=0.01)
        assert [event.id for event in followed.events] == ["1", "4"]
        assert followed.through == 7
        assert followed.cancels == [record.id]
        skipped = [entry for entry in logs if entry["log_level"] == "error"]
        assert [entry["entry"] for entry in skipped] == ["2-0", "7-0"]
        assert all("cannot be read" in entry["error"] for entry in skipped)
    finally:
        await store.close()


def consumers(store: RedisStore) -> list[str]:
    """The names of the work queue group's consumers."""
    with redis.Redis.from_url(URL) as client:
        found = client.xinfo_consumers(store.keys.queue, GROUP)
    return [entry["name"].decode() for entry in found]


@pytest.mark.anyio
async def test_a_retiring_node_leaves_the_group_only_when_it_holds_no_lease(
    redis_prefix: str,
) -> None:
    """``retire`` keeps the consumer of a node that holds a lease (its job stays to be taken
    over) and deletes it once the node holds none."""
    store = RedisStore(f"{URL}?prefix={redis_prefix}", node="n1")
    await store.open()
    try:
        jobs = Jobs()
        record = jobs.record()
        await store.shared.enqueue(record, jobs.event(record), max_queued=10)
        [delivery] = await store.shared.take(1, block_s=1.0)
        await store.shared.retire()
        assert consumers(store) == ["n1"]
        await store.shared.settle([delivery.entry])
        await store.shared.retire()
        assert consumers(store) == []
    finally:
        await store.close()
