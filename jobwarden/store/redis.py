"""The Redis store: job records, listing indexes and the event log in one Redis (or Valkey).

The key layout is in ``redis_keys``, the scripts in ``redis_scripts``. A put or a transition is
one Lua script (record, indexes and event in one atomic step). Writes are grouped like the SQLite
store's: those arriving while a pipeline is in flight go out together in the next one, as one
MULTI/EXEC transaction, in the order they were made. That order matters: the event log is a
stream whose entry ids are the events' offsets, and a stream only grows at its end.

Only commands of Redis 6.2 / Valkey 7.2 are used, through redis-py's ``redis.asyncio`` client:
the store runs on the asyncio backend only. Every Redis failure surfaces as ``StoreError``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

import anyio
import msgspec
import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from jobwarden.actors.states import TERMINAL_STATES, JobState
from jobwarden.errors import StoreError
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.base import MAX_PAGE, EventBounds, JobPage, JobQuery, check_id_cursor
from jobwarden.store.group_commit import GroupCommit, StoreStatistics
from jobwarden.store.redis_keys import SCHEMA, Keys, micros
from jobwarden.store.redis_node import RedisNode
from jobwarden.store.redis_queue_scripts import QUEUE_SCRIPTS
from jobwarden.store.redis_scripts import SCRIPTS
from jobwarden.store.redis_url import RedisSettings, parse_redis_url
from jobwarden.store.shared import SharedStore
from jobwarden.store.stored import decode_events, decode_record

T = TypeVar("T")
log = structlog.get_logger("jobwarden.store.redis")

MIN_VERSION = (6, 2)
SCAN_BUDGET = 1000  # index entries or log entries one filtering script looks at
RECORDS_PER_READ = 1000
IDS_PER_PURGE = 200

_encode = msgspec.json.Encoder().encode


class ScriptCall:
    """One script call in a write pipeline, and the reply it got (an exception if refused)."""

    __slots__ = ("args", "reply", "script")

    def __init__(self, script: str, args: list[str | bytes]) -> None:
        self.script = script
        self.args = args
        self.reply: Any = None


class RedisStore:
    """Jobs and events under one key prefix of a Redis database; see the module docstring.

    ``shared`` is this process's node of the cluster every store on the prefix forms (see
    ``redis_node``); ``node`` names it (default ``<hostname>-<pid>``).
    """

    durable = True

    def __init__(self, settings: RedisSettings | str, *, node: str | None = None) -> None:
        self.settings = parse_redis_url(settings) if isinstance(settings, str) else settings
        # Where the store is, without any password: named by every error, formatted once.
        self.url = self.settings.url
        self.keys = Keys(self.settings.prefix)
        self._client: aioredis.Redis | None = None
        self._once: aioredis.Redis | None = None
        self._shas: dict[str, str] = {}
        self._commits: GroupCommit[ScriptCall] = GroupCommit(self._commit)
        self._node = RedisNode(self, node or f"{socket.gethostname()}-{os.getpid()}")
        self.shared: SharedStore = self._node

    # --- lifecycle ------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, check the server and the layout version, load the scripts."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise StoreError("the Redis job store runs on the asyncio backend only") from None
        settings = self.settings
        options: dict[str, Any] = {
            "host": settings.host,
            "port": settings.port,
            "db": settings.db,
            "username": settings.username,
            "password": settings.password,
            "ssl": settings.tls,
            "socket_timeout": settings.socket_timeout,
            "socket_connect_timeout": settings.socket_connect_timeout,
            "client_name": "jobwarden",
        }
        # A few quick retries ride out a dropped connection; the scripts are idempotent, so a
        # retried write whose first reply was lost is not applied twice.
        retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=3)
        client = aioredis.Redis(retry=retry, **options)
        # A take is not idempotent: Redis leases what it hands out even when the reply is lost,
        # and a silent retry would leave those leases with a node that never heard of them.
        self._once = aioredis.Redis(retry=Retry(NoBackoff(), retries=0), **options)
        self._client = client
        try:
            await self._prepare(client)
            await self._node.prepare()
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self._disconnect()
            if isinstance(exc, RedisError):
                raise StoreError(f"cannot use the Redis job store at {self.url}: {exc}") from exc
            raise

    async def _prepare(self, client: aioredis.Redis) -> None:
        info = await _call(client, "INFO", "server")
        version = str(info.get("redis_version", "0"))
        if tuple(int(part) for part in version.split(".")[:2]) < MIN_VERSION:
            needs = ".".join(map(str, MIN_VERSION))
            raise StoreError(
                f"the Redis at {self.url} is version {version}; jobwarden needs {needs} or newer"
            )
        schema = await _call(client, "HGET", self.keys.meta, "schema")
        if schema is not None and int(schema) > SCHEMA:
            raise StoreError(
                f"the keys under {self.settings.prefix!r} at {self.url} have layout version"
                f" {int(schema)}, newer than this jobwarden understands ({SCHEMA})"
            )
        await _call(client, "HSETNX", self.keys.meta, "schema", SCHEMA)
        await self._load_scripts(client)
        await _warn_without_aof(client, self.url)

    async def _load_scripts(self, client: aioredis.Redis) -> None:
        for name, source in (SCRIPTS | QUEUE_SCRIPTS).items():
            self._shas[name] = await _call(client, "SCRIPT LOAD", source)

    async def load_scripts(self) -> None:
        """Load the scripts again (the server lost its script cache)."""
        await self._load_scripts(self.connected())

    async def close(self) -> None:
        """Wait for the pipeline in flight, then disconnect."""
        await self._commits.drain()
        with anyio.CancelScope(shield=True):
            await self._disconnect()

    async def _disconnect(self) -> None:
        clients = (self._client, self._once)
        self._client = self._once = None
        for client in clients:
            if client is not None:
                await client.aclose()

    def statistics(self) -> StoreStatistics:
        """Pipelines and writes so far: writes / commits is how many each pipeline carried.

        The puts' pipelines and the node's (a supervisor's transitions go through the node).
        """
        puts, changes = self._commits.statistics(), self._node.statistics()
        return StoreStatistics(
            commits=puts.commits + changes.commits, writes=puts.writes + changes.writes
        )

    def connected(self, *, once: bool = False) -> aioredis.Redis:
        """The client; ``once``: the one that sends each command once, so a lost reply is an
        error rather than a second send. ``StoreError`` when the store is not open."""
        client = self._once if once else self._client
        if client is None:
            raise StoreError(f"the Redis job store at {self.url} is not open")
        return client

    # --- writes ---------------------------------------------------------------------------------

    async def put(self, record: JobRecord, event: JobEvent) -> JobRecord:
        """Insert the job and its first event, or return the job its owner's key already names."""
        reply = await self.write_put(record, event, offset=str(event.offset))
        if reply[0] == b"duplicate":
            return decode_record(reply[1], self.url)
        return record

    async def write_put(
        self,
        record: JobRecord,
        event: JobEvent,
        *,
        offset: str,
        max_queued: int | None = None,
        start_by: datetime | None = None,
    ) -> Any:
        """Run the put script (``offset`` "~<n>": numbered by Redis, past n; ``max_queued``:
        also queue the job for the cluster's nodes; ``start_by``: when the job runs out of time
        to start, for the nodes' sweep of the queue) and return its reply."""
        key = record.idempotency_key
        owner = record.owner
        write = ScriptCall(
            "put",
            [
                self.settings.prefix,
                record.id,
                offset,
                _encode(record),
                _encode(event),
                record.state.value,
                record.tool,
                record.plugin,
                owner or "",
                "0" if owner is None else "1",
                b"" if key is None else _encode([owner, key]),
                _done_at(record),
                "" if max_queued is None else str(max_queued),
                str(record.attempt),
                "" if start_by is None else str(micros(start_by)),
            ],
        )
        await self._write(write)
        return write.reply

    async def transition(self, record: JobRecord, event: JobEvent) -> None:
        """Replace the job's record and append the event, in one script."""
        await self._write(self.transition_write(record, event, offset=str(event.offset)))

    def transition_write(
        self,
        record: JobRecord,
        event: JobEvent,
        *,
        offset: str,
        prior: tuple[str, str] = ("", ""),
        cap: str = "",
        start_by: datetime | None = None,
        dead_letter: tuple[str, str, str] | tuple[()] = (),
    ) -> ScriptCall:
        """The transition script's call: ``prior`` (state, attempt) makes it a compare-and-set,
        ``cap`` the tool's concurrency cap on the cluster when it starts the job, ``start_by``
        when a job queued again runs out of time to start, ``dead_letter`` (deliveries, node,
        stream length) the note the write adds for a job given up on."""
        return ScriptCall(
            "transition",
            [
                self.settings.prefix,
                record.id,
                offset,
                _encode(record),
                _encode(event),
                record.state.value,
                _done_at(record),
                *prior,
                cap,
                str(record.attempt),
                "" if start_by is None else str(micros(start_by)),
                *dead_letter,
            ],
        )

    async def _write(self, write: ScriptCall) -> None:
        # Joining the batch happens before the first await: writes keep the order they were made.
        await self._commits.write(write)
        if isinstance(write.reply, Exception):
            raise StoreError(f"the Redis job store at {self.url} refused a write: {write.reply}")

    async def _commit(self, writes: list[ScriptCall]) -> None:
        client = self.connected()
        try:
            replies = await self._pipeline(client, writes)
            if any(isinstance(reply, NoScriptError) for reply in replies):
                # The server lost its script cache (a restart, SCRIPT FLUSH): load and redo. The
                # writes that did go through answer "stored" the second time.
                await self._load_scripts(client)
                replies = await self._pipeline(client, writes)
        except RedisError as exc:
            raise StoreError(f"the Redis job store at {self.url} failed a write: {exc}") from exc
        for write, reply in zip(writes, replies, strict=True):
            write.reply = reply

    async def pipeline(self, writes: list[ScriptCall], *, transaction: bool = True) -> list[Any]:
        """Send ``writes`` in one round trip (as one MULTI/EXEC by default); the replies
        (exceptions included), in order."""
        return await self._pipeline(self.connected(), writes, transaction=transaction)

    async def _pipeline(
        self, client: aioredis.Redis, writes: list[ScriptCall], *, transaction: bool = True
    ) -> list[Any]:
        async with client.pipeline(transaction=transaction) as pipe:
            for write in writes:
                pipe.evalsha(self._shas[write.script], 0, *write.args)
            return await pipe.execute(raise_on_error=False)

    async def purge(
        self,
        *,
        finished_before: datetime | None,
        keep_finished: int | None,
        limit: int | None = None,
    ) -> int:
        """Delete up to ``limit`` finished jobs by age and/or count; trim the event log to match."""
        if finished_before is None and keep_finished is None:
            return 0
        try:
            doomed = await self._doomed(finished_before, keep_finished, limit)
        except RedisError as exc:
            raise StoreError(f"the Redis job store at {self.url} could not be read: {exc}") from exc
        removed = 0
        # Each script deletes a slice atomically; once begun, a purge is not cut off halfway.
        with anyio.CancelScope(shield=True):
            for chunk in _chunks(doomed, IDS_PER_PURGE):
                removed += int(await self.script("purge", [], [self.settings.prefix, *chunk]))
        return removed

    async def _doomed(
        self, finished_before: datetime | None, keep_finished: int | None, limit: int | None
    ) -> list[str]:
        """The ids to purge, oldest first: beyond the newest ``keep_finished``, or ended before."""
        client = self.connected()
        keys = self.keys
        states = sorted(TERMINAL_STATES)
        doomed: set[str] = set()
        if keep_finished is not None:
            async with client.pipeline(transaction=False) as pipe:
                for state in states:
                    pipe.zcard(keys.state(state))
                finished = sum(await pipe.execute())
            excess = max(0, finished - keep_finished)
            count = excess if limit is None else min(excess, limit)
            if count > 0:
                async with client.pipeline(transaction=False) as pipe:
                    for state in states:
                        pipe.zrange(keys.state(state), 0, count - 1)
                    oldest = heapq.merge(*await pipe.execute())
                doomed.update(_ids(itertools.islice(oldest, count)))
        if finished_before is not None and (limit is None or limit > 0):
            ended = await client.zrangebyscore(
                keys.done_at,
                "-inf",
                f"({micros(finished_before)}",
                start=None if limit is None else 0,
                num=limit,
            )
            doomed.update(_ids(ended))
        chosen = sorted(doomed)
        return chosen if limit is None else chosen[: max(0, limit)]

    # --- reads ----------------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobRecord | None:
        """The record with that id, or None."""
        try:
            raw = await _call(self.connected(), "HGET", self.keys.job(job_id), "record")
        except RedisError as exc:
            raise self._read_error(exc) from exc
        return None if raw is None else decode_record(raw, self.url)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        """Newest first: the smallest index that serves the filters, read backwards by id from
        the cursor (a job id, or ``InvalidRequest``)."""
        check_id_cursor(query)
        limit = max(1, min(query.limit, MAX_PAGE))
        wanted = limit + 1
        indexes, filters = self._listing_plan(query)
        rows: list[bytes] = []
        cursor = query.cursor or ""
        while True:
            reply = await self.script(
                "list",
                indexes,
                [self.settings.prefix, cursor, wanted - len(rows), SCAN_BUDGET, *filters],
            )
            rows.extend(reply[2:])
            if len(rows) >= wanted or reply[1] == 1:
                break
            cursor = reply[0].decode()
        jobs = [decode_record(row, self.url) for row in rows[:limit]]
        return JobPage(jobs=jobs, next_cursor=jobs[-1].id if len(rows) > limit else None)

    def _listing_plan(self, query: JobQuery) -> tuple[list[str], list[str]]:
        """The indexes that could serve ``query`` and the field/value pairs rows must match."""
        keys = self.keys
        state = None if query.state is None else query.state.value
        owner, tool, plugin = query.owner, query.tool, query.plugin
        indexes: list[str] = []
        filters: list[str] = []
        if owner is not None and state is not None:
            indexes.append(keys.owner_state(owner, state))
        elif owner is not None:
            indexes.append(keys.owner(owner))
        elif state is not None:
            indexes.append(keys.state(state))
        for name, value, index in (
            ("state", state, None),
            ("owner", owner, None),
            ("tool", tool, keys.tool),
            ("plugin", plugin, keys.plugin),
        ):
            if value is not None:
                filters += [name, value]
                if index is not None:
                    indexes.append(index(value))
        return indexes or [keys.all_jobs], filters

    async def unfinished(self) -> list[JobRecord]:
        """Queued and running jobs, oldest first."""
        keys = self.keys
        try:
            client = self.connected()
            async with client.pipeline(transaction=True) as pipe:
                pipe.zrange(keys.state(JobState.QUEUED), 0, -1)
                pipe.zrange(keys.state(JobState.RUNNING), 0, -1)
                queued, running = await pipe.execute()
            records: list[JobRecord] = []
            for chunk in _chunks(heapq.merge(queued, running), RECORDS_PER_READ):
                async with client.pipeline(transaction=False) as pipe:
                    for job_id in chunk:
                        pipe.hget(keys.job(job_id.decode()), "record")
                    raws = await pipe.execute()
                records.extend(decode_record(raw, self.url) for raw in raws if raw is not None)
        except RedisError as exc:
            raise self._read_error(exc) from exc
        return records

    async def read_events(
        self, after: int, limit: int, *, job_id: str | None = None, tool: str | None = None
    ) -> list[JobEvent]:
        """Up to ``limit`` events after offset ``after``, in offset order."""
        if limit < 1:
            return []
        prefix = self.settings.prefix
        start = max(after, 0) + 1
        if job_id is not None:
            bodies = await self.script(
                "events_of_job", [], [prefix, job_id, str(after), limit, tool or ""]
            )
        elif tool is not None:
            bodies = []
            while True:
                reply = await self.script(
                    "events_of_tool", [], [prefix, start, SCAN_BUDGET, limit - len(bodies), tool]
                )
                bodies.extend(reply[2:])
                if len(bodies) >= limit or reply[1] == 1:
                    break
                start = _offset(reply[0]) + 1
        else:
            try:
                entries = await self.connected().xrange(
                    self.keys.events, min=f"{start}-0", max="+", count=limit
                )
            except RedisError as exc:
                raise self._read_error(exc) from exc
            bodies = [fields[b"body"] for _, fields in entries]
        return decode_events(bodies, self.url)

    async def event_bounds(self) -> EventBounds:
        """The first retained entry of the log, and the newest offset ever written."""
        try:
            async with self.connected().pipeline(transaction=True) as pipe:
                pipe.xrange(self.keys.events, "-", "+", count=1)
                pipe.hget(self.keys.meta, "last")
                first, last_raw = await pipe.execute()
        except RedisError as exc:
            raise self._read_error(exc) from exc
        last = int(last_raw or 0)
        return EventBounds(first=_offset(first[0][0]) if first else last + 1, last=last)

    async def script(
        self, name: str, keys: Sequence[str], args: Sequence[Any], *, once: bool = False
    ) -> Any:
        """Run one of the store's scripts (``once``: see ``connected``); ``StoreError`` if Redis
        fails it."""
        client = self.connected(once=once)
        try:
            try:
                return await _call(client, "EVALSHA", self._shas[name], len(keys), *keys, *args)
            except NoScriptError:
                await self._load_scripts(client)
                return await _call(client, "EVALSHA", self._shas[name], len(keys), *keys, *args)
        except RedisError as exc:
            raise StoreError(f"the Redis job store at {self.url} failed: {exc}") from exc

    def _read_error(self, exc: RedisError) -> StoreError:
        return StoreError(f"the Redis job store at {self.url} could not be read: {exc}")


async def _warn_without_aof(client: aioredis.Redis, url: str) -> None:
    """Say so when Redis keeps no append-only file: a Redis restart would lose recent jobs."""
    try:
        config = await _call(client, "CONFIG GET", "appendonly")
    except ResponseError:
        return  # CONFIG is disabled on many managed services: nothing to check with
    if config.get("appendonly") != "yes":
        log.warning(
            "Redis keeps no append-only file: jobs accepted since its last snapshot are lost"
            " if Redis restarts (set appendonly yes, appendfsync everysec or always)",
            url=url,
        )


async def _call(client: aioredis.Redis, *args: Any) -> Any:
    """One command, its reply parsed by redis-py: its typed command methods do not await cleanly
    under mypy (they return ``Awaitable[T] | T`` for the sync and async clients alike)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _done_at(record: JobRecord) -> str:
    """When a finished job ended, in microseconds since the epoch ('' while it runs)."""
    finished = record.finished_at
    if finished is None or not record.state.terminal:
        return ""
    return str(micros(finished))


def _offset(entry_id: bytes) -> int:
    """The offset a stream entry id ``<offset>-0`` stands for."""
    return int(entry_id.split(b"-", 1)[0])


def _ids(members: Iterable[bytes]) -> list[str]:
    return [member.decode() for member in members]


def _chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter)."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
