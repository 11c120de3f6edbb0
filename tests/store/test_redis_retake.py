"""A take whose reply is lost still leased its jobs to the node: the take fails instead of being
sent again, and ``retake`` finds every lease the node holds (page by page, skipping entries
deleted meanwhile)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import msgspec
import pytest
import redis
import redis.asyncio as aioredis
from redis.typing import EncodableT, FieldT

from jobwarden.errors import StoreError
from jobwarden.records import JobRecord
from jobwarden.store import redis_node
from jobwarden.store.redis import RedisStore
from tests.actors.cluster_nodes import eventually
from tests.redis_server import private_redis
from tests.store.conformance import Jobs

pytestmark = pytest.mark.anyio

# Holds Redis for ARGV[1] ms: a reply it owes is sent only afterwards.
BUSY = """
local start = redis.call('TIME')
repeat
  local now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) >= tonumber(ARGV[1]) * 1000
return 0
"""


@pytest.fixture
def anyio_backend() -> str:
    """redis-py is asyncio-only."""
    return "asyncio"


@asynccontextmanager
async def own_redis(socket_timeout: float) -> AsyncIterator[tuple[RedisStore, aioredis.Redis]]:
    """A store on a redis-server of the test's own (Redis is held busy here), and a raw client."""
    with private_redis() as (_, url):
        store = RedisStore(f"{url}?prefix=t&socket_timeout={socket_timeout}", node="n1")
        await store.open()
        raw = aioredis.Redis.from_url(url)
        try:
            yield store, raw
        finally:
            await raw.aclose()
            await store.close()


async def queue(store: RedisStore, jobs: Jobs, count: int) -> list[JobRecord]:
    """``count`` queued jobs in the store and its work queue."""
    records = [jobs.record() for _ in range(count)]
    for record in records:
        await store.shared.enqueue(record, jobs.event(record), max_queued=1000)
    return records


async def test_a_take_whose_reply_is_lost_fails_and_retake_finds_its_job() -> None:
    """Redis serves a blocked take only after the socket timeout: the take raises (it is not
    sent again), and ``retake`` returns the job Redis leased to the node meanwhile."""
    jobs = Jobs()
    # A 4 s socket timeout: the take blocks in Redis for 2 s, the time this test has to see it
    # blocked and send the entry (on a loaded machine too).
    async with own_redis(socket_timeout=4.0) as (store, raw):
        record = jobs.record()
        await store.put(record, jobs.event(record))
        failed: list[StoreError] = []

        async def take() -> None:
            with pytest.raises(StoreError, match="could not read the work queue") as caught:
                await store.shared.take(1, block_s=60)
            failed.append(caught.value)

        def reading(client: redis.Redis) -> bool:
            clients: list[dict[str, str]] = client.client_list()  # type: ignore[assignment]
            return any(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in clients)

        async with anyio.create_task_group() as tg:
            tg.start_soon(take)
            with redis.Redis(host=store.settings.host, port=store.settings.port) as client:
                await eventually(lambda: reading(client), timeout_s=10)
            # The entry lands while Redis is held: the blocked take is served after the hold,
            # past its socket timeout, to a client that gave up on it.
            entry: dict[FieldT, EncodableT] = {
                "job": record.id,
                "record": msgspec.json.encode(record),
            }
            async with raw.pipeline(transaction=True) as pipe:
                pipe.xadd(store.keys.queue, entry)
                pipe.eval(BUSY, 0, 4500)
                await pipe.execute()
        assert len(failed) == 1
        assert await store.shared.take(1, block_s=0.01) == []
        [delivery] = await store.shared.retake()
    assert (delivery.job_id, delivery.deliveries, delivery.record) == (record.id, 1, record)


async def test_retake_returns_every_lease_page_by_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """With pages of two, five leases come back in queue order, each once; another node's are
    not among them."""
    monkeypatch.setattr(redis_node, "RETAKE_PAGE", 2)
    jobs = Jobs()
    async with own_redis(socket_timeout=5.0) as (store, _):
        mine = await queue(store, jobs, 5)
        taken = await store.shared.take(5, block_s=0.01)
        await queue(store, jobs, 1)
        other = RedisStore(store.settings, node="n2")
        await other.open()
        try:
            [theirs] = await other.shared.take(5, block_s=0.01)
            assert [d.job_id for d in await other.shared.retake()] == [theirs.job_id]
        finally:
            await other.close()
        retaken = await store.shared.retake()
    assert retaken == taken
    assert [d.job_id for d in retaken] == [r.id for r in mine]


async def test_retake_lets_go_of_an_entry_deleted_meanwhile() -> None:
    """A leased entry deleted from the queue is acknowledged and not returned: nothing is left
    to run for it."""
    jobs = Jobs()
    async with own_redis(socket_timeout=5.0) as (store, raw):
        await queue(store, jobs, 2)
        gone, kept = await store.shared.take(2, block_s=0.01)
        await raw.xdel(store.keys.queue, gone.entry)
        assert await store.shared.retake() == [kept]
        pending = await raw.xpending(store.keys.queue, "workers")
    assert pending["pending"] == 1


async def test_retake_on_a_closed_store_is_a_store_error() -> None:
    """Without a connection, retake fails as every store call does: with a StoreError."""
    store = RedisStore("redis://127.0.0.1:6379/0?prefix=never", node="n1")
    with pytest.raises(StoreError, match="not open"):
        await store.shared.retake()
