"""One cluster node's side of the Redis store (``SharedStore``): the work queue, leases,
compare-and-set writes, the followed log and the requests between nodes.

The queue is the ``<p>:queue`` stream read through the ``workers`` consumer group, one consumer per
node (``redis_queue_scripts`` says how leases work). Offsets are taken by the write scripts from
``<p>:meta last``, so they are global: every node follows ``<p>:events`` with a blocking ``XREAD``
from the offset it delivered last, together with ``<p>:control`` (cancel requests).

A change (a job's transition) rides out a lost connection: it is retried with backoff for up to
``RECONNECT_S``, and a retried change whose first attempt did go through is recognised (the stored
record is already the new one) and not applied twice. So a job that finishes while Redis is away
is recorded once Redis is back; a submit, in contrast, fails at once (503) and the client retries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import anyio
import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT, FieldT

from jobwarden.errors import Overloaded, StoreError
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.group_commit import GroupCommit, StoreStatistics
from jobwarden.store.redis_keys import SCHEMA, from_micros, micros
from jobwarden.store.redis_queue_scripts import GROUP
from jobwarden.store.shared import Delivery, Followed, Overdue, Verdict
from jobwarden.store.stored import decode_event, decode_record

if TYPE_CHECKING:
    from jobwarden.store.redis import RedisStore, ScriptCall

log = structlog.get_logger("jobwarden.store.redis")
RECONNECT_S = 60.0  # how long a change waits for Redis to come back before it fails
FOLLOW_COUNT = 1000
CONTROL_LENGTH = 1000  # cancel requests kept in <p>:control (approximately)
DEAD_LENGTH = 10_000  # dead-letter notes kept in <p>:dead (approximately)
RETAKE_PAGE = 500

_LOST = (RedisConnectionError, RedisTimeoutError)


class RedisNode:
    """The ``SharedStore`` of a ``RedisStore``; ``node`` names this process in the group."""

    def __init__(self, store: RedisStore, node: str) -> None:
        self._store = store
        self.node = node
        self.lease_s = store.settings.lease_s
        self.max_deliveries = store.settings.max_deliveries
        self._keys = store.keys
        self._prefix = store.settings.prefix
        self._changes: GroupCommit[ScriptCall] = GroupCommit(self._commit_changes)
        self._control_last = "0-0"
        self._followed = 0  # the newest offset this node's follower has read
        # meta's lost_below when last looked at: a write script sets it when it finds the log's
        # newest offset below what the writing node had read (Redis lost data).
        self._lost_seen: bytes | None = None

    async def prepare(self) -> None:
        """Create the consumer group if it is missing; skip cancel requests made before now."""
        client = self._store.connected()
        await self._create_group()
        async with client.pipeline(transaction=False) as pipe:
            pipe.xrevrange(self._keys.control, count=1)
            pipe.hget(self._keys.meta, "lost_below")
            newest, self._lost_seen = await pipe.execute()
        self._control_last = newest[0][0].decode() if newest else "0-0"

    async def _create_group(self) -> None:
        try:
            await self._store.connected().xgroup_create(
                self._keys.queue, GROUP, id="0", mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _restore(self, found: str) -> None:
        """Redis lost data under the prefix (it restarted without persistence, or went back to
        an older snapshot): put back the layout version, an offset past every one this node
        followed, and the consumer group, so the nodes take and number jobs again."""
        self._say_lost(found)
        # The offsets first: a job taken once the group is back must not write an event at an
        # offset some node delivered already (its subscribers would skip it as a duplicate).
        await self._script("restore", [SCHEMA, self._followed])
        try:
            await self._create_group()
        except RedisError as exc:
            raise self._error("create the consumer group again", exc) from exc

    def _say_lost(self, found: str) -> None:
        log.error(
            "Redis lost jobwarden's data (restarted empty or rolled back to an older snapshot):"
            " jobs and events written before are gone; the node works on with what is left",
            found=found,
            url=self._store.url,
        )

    # --- writes ---------------------------------------------------------------------------------

    async def enqueue(
        self,
        record: JobRecord,
        event: JobEvent,
        *,
        max_queued: int,
        start_by: datetime | None = None,
    ) -> JobRecord:
        """Insert the job with its first event and add it to the work queue (and ``start_by`` to
        the queue's deadlines), in one script."""
        reply = await self._store.write_put(
            record, event, offset=f"~{self._followed}", max_queued=max_queued, start_by=start_by
        )
        if reply[0] == b"duplicate":
            return decode_record(reply[1], self._store.url)
        if reply[0] == b"overloaded":
            raise Overloaded(f"{int(reply[1])} jobs wait in the cluster's queue", tool=record.tool)
        return record

    async def change(
        self,
        prior: JobRecord,
        record: JobRecord,
        event: JobEvent,
        *,
        cap: int | None = None,
        dead_letter: int | None = None,
        start_by: datetime | None = None,
    ) -> Verdict:
        """Compare-and-set transition: written only if the stored job is still ``prior``'s;
        with ``dead_letter`` (deliveries), the same script notes the job in ``<p>:dead``; with
        ``start_by`` (a job queued again), it notes when the job runs out of time to start."""
        write = self._store.transition_write(
            record,
            event,
            offset=f"~{self._followed}",
            prior=(prior.state.value, str(prior.attempt)),
            cap="" if cap is None else str(cap),
            start_by=start_by,
            dead_letter=()
            if dead_letter is None
            else (str(dead_letter), self.node, str(DEAD_LENGTH)),
        )
        await self._changes.write(write)
        reply = write.reply
        if isinstance(reply, Exception):
            raise StoreError(f"the Redis job store at {self._store.url} refused a write: {reply}")
        if reply == b"busy":
            return Verdict.BUSY
        if isinstance(reply, list):
            return Verdict.STALE
        return Verdict.DONE

    def statistics(self) -> StoreStatistics:
        """The transitions' pipelines and writes so far."""
        return self._changes.statistics()

    async def _commit_changes(self, writes: list[ScriptCall]) -> None:
        store = self._store
        deadline = time.monotonic() + RECONNECT_S
        pause = 0.05
        while True:
            try:
                # No MULTI/EXEC: each script is atomic on its own, one connection keeps their
                # order, and changes of different jobs need not succeed or fail together.
                replies = await store.pipeline(writes, transaction=False)
                if any(isinstance(reply, NoScriptError) for reply in replies):
                    await store.load_scripts()
                    replies = await store.pipeline(writes, transaction=False)
            except _LOST as exc:
                if time.monotonic() + pause > deadline:
                    raise StoreError(
                        f"the Redis job store at {store.url} was unreachable for"
                        f" {RECONNECT_S:g}s: {exc}"
                    ) from exc
                await anyio.sleep(pause)
                pause = min(pause * 2, 1.0)
                continue
            except RedisError as exc:
                raise StoreError(f"the Redis job store at {store.url} failed: {exc}") from exc
            for write, reply in zip(writes, replies, strict=True):
                write.reply = reply
            return

    # --- the queue ------------------------------------------------------------------------------

    async def take(self, count: int, *, block_s: float) -> list[Delivery]:
        """New entries of the queue for this node (a lease on each), with their records."""
        client = self._store.connected(once=True)
        try:
            reply = await client.xreadgroup(
                GROUP,
                self.node,
                {self._keys.queue: ">"},
                count=count,
                block=self._block_ms(block_s),
            )
        except RedisError as exc:
            if _no_group(exc):
                await self._restore("the work queue's consumer group is gone")
            raise self._error("read the work queue", exc) from exc
        if not reply:
            return []
        # Each entry carries the record as it was queued; if it changed since (a cancel), the
        # compare-and-set that starts the job finds out.
        return [
            Delivery(
                entry=entry.decode(),
                job_id=fields[b"job"].decode(),
                record=_record(fields.get(b"record"), self._store.url),
                deliveries=1,
            )
            for entry, fields in reply[0][1]
        ]

    async def overdue(self, now: datetime, count: int, *, skip: int = 0) -> Overdue:
        """Queued jobs whose time to start ran out by ``now``, from ``<p>:queue:deadlines``."""
        reply = await self._script("overdue", [micros(now), count, skip], once=True)
        records = [decode_record(raw, self._store.url) for raw in reply[1:]]
        return Overdue(records, from_micros(reply[0]) if reply[0] else None)

    async def reclaim(self, count: int) -> list[Delivery]:
        """Entries idle for longer than a lease (their node stopped renewing), now ours."""
        lease_ms = max(1, math.ceil(self.lease_s * 1000))
        flat = await self._script("reclaim", [self.node, lease_ms, count], once=True)
        return _deliveries(flat, self._store.url)

    async def retake(self) -> list[Delivery]:
        """Every entry leased to this node, with the job's stored record, page by page."""
        deliveries: list[Delivery] = []
        start = "-"
        while True:
            flat = await self._script("retake", [self.node, start, RETAKE_PAGE])
            deliveries += (d for d in _deliveries(flat, self._store.url) if d.job_id)
            if len(flat) < 4 * RETAKE_PAGE:
                return deliveries
            start = "(" + flat[-4].decode()

    async def renew(self, entries: Sequence[str]) -> list[str]:
        """Reset the age of this node's leases; returns the entries it lost."""
        if not entries:
            return []
        lost = await self._script("renew", [self.node, *entries])
        return [entry.decode() for entry in lost]

    async def settle(self, entries: Sequence[str]) -> None:
        """Acknowledge and delete the entries this node still holds."""
        if entries:
            await self._script("settle", [self.node, *entries])

    async def hand_back(self, entries: Sequence[tuple[str, str]]) -> None:
        """Put jobs this node took but will not run back at the end of the queue."""
        if entries:
            flat = [part for pair in entries for part in pair]
            await self._script("hand_back", [self.node, *flat])

    async def retire(self) -> None:
        """Delete this node's consumer from the group when it holds no lease: a consumer stays
        listed (``XINFO CONSUMERS``) forever otherwise, one per process that ever ran."""
        await self._script("retire", [self.node])

    async def request_cancel(self, job_id: str) -> None:
        """Ask the node running the job (whichever it is) to cancel it."""
        fields: dict[FieldT, EncodableT] = {"op": "cancel", "job": job_id}
        try:
            await self._store.connected().xadd(
                self._keys.control, fields, maxlen=CONTROL_LENGTH, approximate=True
            )
        except RedisError as exc:
            raise self._error("send a cancel request", exc) from exc

    async def follow(self, after: int, *, block_s: float) -> Followed:
        """Events after ``after`` and new cancel requests, blocking up to ``block_s``."""
        keys = self._keys
        self._followed = max(self._followed, after)
        try:
            async with self._store.connected().pipeline(transaction=False) as pipe:
                # Read first: a layout version gone, or a newest offset below what was delivered
                # here, is Redis having lost data, and new offsets would repeat delivered ones.
                pipe.hmget(keys.meta, ["schema", "last", "lost_below"])
                pipe.xread(
                    {keys.events: f"{after}-0", keys.control: self._control_last},
                    count=FOLLOW_COUNT,
                    block=self._block_ms(block_s),
                )
                (schema, last, lost), reply = await pipe.execute()
        except RedisError as exc:
            raise self._error("follow the event log", exc) from exc
        newest = int(last or 0)
        if schema is None or newest < after:
            found = "the layout version is gone" if schema is None else "the log went back"
            await self._restore(f"{found} (followed up to {after}, newest {newest})")
        elif lost != self._lost_seen and lost is not None:
            self._say_lost(f"a write found the log's newest offset below {lost.decode()}")
        self._lost_seen = lost
        events: list[JobEvent] = []
        cancels: list[str] = []
        through = None
        for stream, entries in reply or ():
            if stream.decode() == keys.events:
                events = self._readable_events(entries)
                through = int(entries[-1][0].split(b"-")[0])
                self._followed = max(self._followed, through)
            else:
                self._control_last = entries[-1][0].decode()
                cancels = [
                    job.decode()
                    for _, fields in entries
                    if fields.get(b"op") == b"cancel" and (job := fields.get(b"job")) is not None
                ]
        return Followed(events=events, cancels=cancels, through=through)

    def _readable_events(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[JobEvent]:
        """The events of the log's ``entries``, each one that cannot be read logged and skipped:
        stopping there would leave this node following nothing after it, forever."""
        events: list[JobEvent] = []
        for entry, fields in entries:
            try:
                events.append(decode_event(fields.get(b"body", b""), self._store.url))
            except StoreError as exc:
                log.error(
                    "an event in the shared log cannot be read; skipped",
                    entry=entry.decode(errors="replace"),
                    error=str(exc),
                )
        return events

    def _block_ms(self, block_s: float) -> int:
        # A blocking read must return before the socket timeout, or it reads as a lost Redis.
        wait = min(block_s, self._store.settings.socket_timeout / 2)
        return max(1, math.ceil(wait * 1000))

    async def _script(self, name: str, args: list[Any], *, once: bool = False) -> Any:
        try:
            return await self._store.script(name, [], [self._prefix, *args], once=once)
        except StoreError as exc:
            if isinstance(exc.__cause__, RedisError) and _no_group(exc.__cause__):
                await self._restore("the work queue's consumer group is gone")
            raise

    def _error(self, doing: str, exc: RedisError) -> StoreError:
        return StoreError(f"the Redis job store at {self._store.url} could not {doing}: {exc}")


def _no_group(exc: RedisError) -> bool:
    """Whether Redis says the work queue or its consumer group does not exist (it lost them)."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


def _record(raw: bytes | None, store: str) -> JobRecord | None:
    return None if raw is None else decode_record(raw, store)


def _deliveries(flat: list[Any], store: str) -> list[Delivery]:
    """A queue script's flat (entry, job, deliveries, record) reply, as deliveries."""
    return [
        Delivery(
            entry=flat[i].decode(),
            job_id=flat[i + 1].decode(),
            deliveries=int(flat[i + 2]),
            record=_record(flat[i + 3] or None, store),
        )
        for i in range(0, len(flat), 4)
    ]
