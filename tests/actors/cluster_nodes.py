"""Several supervisors in this process as the nodes of one cluster on a Redis prefix, and a
"ghost" node: a bare store that takes jobs from the queue and then stops, like a node that died."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import msgspec
import redis

from jobwarden import JobState, Plugin, Supervisor
from jobwarden.actors.event_bus import EventBus
from jobwarden.ids import new_job_id
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.redis import RedisStore
from jobwarden.store.redis_queue_scripts import GROUP
from tests.redis_server import URL


def cluster_url(prefix: str, **options: Any) -> str:
    """The store URL of the test's prefix with extra query ``options``."""
    query = "".join(f"&{name}={value}" for name, value in options.items())
    return f"{URL}?prefix={prefix}{query}"


@asynccontextmanager
async def nodes(
    url: str, names: Iterable[str], plugins: list[Plugin], **options: Any
) -> AsyncIterator[list[Supervisor]]:
    """One started supervisor per name, all on ``url``; stopped in reverse order."""
    async with AsyncExitStack() as stack:
        sups = [
            await stack.enter_async_context(
                Supervisor(plugins=plugins, store=RedisStore(url, node=name), **options)
            )
            for name in names
        ]
        yield sups


class Ghost:
    """A node that takes a job and dies holding it: it never renews, settles or writes again."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.bus = EventBus(store, source="jobwarden://ghost")

    async def submit(self, tool: str, plugin: str, input: dict[str, Any]) -> JobRecord:
        """Queue a job through the ghost's store (no supervisor takes it yet)."""
        record = JobRecord(
            id=new_job_id(),
            tool=tool,
            plugin=plugin,
            state=JobState.QUEUED,
            input=input,
            created_at=datetime.now(UTC),
        )
        return await self.store.shared.enqueue(record, self._event(record), max_queued=1000)

    async def take_and_die(self, record: JobRecord, *, running: bool) -> str:
        """Take ``record`` from the queue (and start it when ``running``); returns its entry."""
        [delivery] = await self.store.shared.take(1, block_s=1.0)
        assert delivery.job_id == record.id
        if running:
            started = msgspec.structs.replace(
                record, state=JobState.RUNNING, started_at=datetime.now(UTC)
            )
            await self.store.shared.change(record, started, self._event(started))
        return delivery.entry

    def expire(self, entry: str, *, deliveries: int = 1) -> None:
        """Age the ghost's lease on ``entry`` past any lease, as if ``deliveries`` nodes had held
        it (XCLAIM's IDLE and RETRYCOUNT)."""
        keys = self.store.keys
        with redis.Redis.from_url(URL) as client:
            client.xclaim(
                keys.queue,
                GROUP,
                self.store.shared.node,
                0,
                [entry],
                idle=3_600_000,
                retrycount=deliveries,
                justid=True,
            )

    def _event(self, record: JobRecord) -> JobEvent:
        return self.bus.event(record, record.state.value)


async def eventually(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Return once ``check()`` holds, looking every 50 ms: for what Redis announces to nobody."""
    with anyio.fail_after(timeout_s):
        for _ in itertools.count():
            if check():
                return
            await anyio.sleep(0.05)


def queue_length(prefix: str) -> int:
    """Entries left in the prefix's work queue (settled jobs leave none)."""
    with redis.Redis.from_url(URL) as client:
        return int(client.xlen(f"{prefix}:queue"))


@asynccontextmanager
async def orphaned(
    url: str, tool: str, input: dict[str, Any], *, running: bool, deliveries: int = 1
) -> AsyncIterator[JobRecord]:
    """A job of ``tool`` that a ghost node took (and started, when ``running``) before it died;
    its lease has expired, as if ``deliveries`` nodes had held it."""
    store = RedisStore(url, node="ghost")
    await store.open()
    ghost = Ghost(store)
    try:
        job = await ghost.submit(tool, tool.split(".")[0], input)
        ghost.expire(await ghost.take_and_die(job, running=running), deliveries=deliveries)
        yield job
    finally:
        await store.close()
