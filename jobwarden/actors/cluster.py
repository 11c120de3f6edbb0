"""A supervisor's part in a cluster: how several nodes on one shared store act as one service.

- The puller takes jobs from the shared work queue while this node has a runner free for them,
  and turns each into a local job actor: the node holds a lease on it until it ends. After a take
  or reclaim that failed it first looks at every lease the node holds: the failed call may have
  leased it jobs whose reply never arrived.
- The renewer keeps those leases alive; the reclaimer takes over jobs whose node stopped renewing
  (it died): a job found queued just runs here, one found running is retried or fails as
  ``interrupted`` by the same rule as recovery after a crash, and a job handed out more than
  ``max_deliveries`` times fails as ``crashed`` (dead-lettered): it is what kills the nodes.
- The follower reads the shared event log in offset order and hands each event to this node's
  subscribers and waiters, so every node sees every node's events; it also carries the cancel
  requests other nodes address to the jobs running here.
- The settler acknowledges the queue entries of jobs that ended here, in batches.
- The sweeper ends the queued jobs whose time to start (their tool's queue or total timeout) ran
  out while no node took them: they wait in the shared queue as long as every node is busy, and a
  node ends a job it holds by its own alarm. Every node sweeps, sleeping until the next deadline
  it knows of (its own submits wake it); the compare-and-set settles any race.

Every write a node makes about a job is a compare-and-set on its stored state and attempt, so a
node that lost a job (its lease expired, another node cancelled it while it waited here) finds out
at its next write and drops the job without touching what the other node did.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import msgspec
import structlog

from jobwarden.actors import start_limits
from jobwarden.actors.job_actor import (
    CANCEL_REASON,
    JobActor,
    Superseded,
    commit_change,
    next_attempt,
    queued_cancel_reason,
)
from jobwarden.actors.states import JobState
from jobwarden.errors import (
    ErrorInfo,
    InvalidInput,
    JobFinished,
    OutcomeType,
    StoreError,
    ToolNotFound,
)
from jobwarden.records import JobEvent, JobRecord
from jobwarden.store.shared import Delivery, SharedStore

if TYPE_CHECKING:
    from jobwarden.actors.supervisor import Supervisor

log = structlog.get_logger("jobwarden.cluster")

BLOCK_S = 1.0  # how long one blocking read of the queue or the log waits
RECLAIM_BATCH = 100
SETTLE_BATCH = 500
MAX_PAUSE_S = 2.0  # the longest pause between attempts while the store is unreachable
INTERRUPTED = "the node running the job stopped renewing its lease (it died or lost Redis)"
DEAD_LETTER = "the job was handed to a node {n} times and each stopped while running it"
CANCELLED_AWAY = "cancelled while the node running it was gone"
CANCELS_KEPT = 10_000  # cancel requests remembered for jobs running elsewhere
SWEEP_BATCH = 100  # overdue queued jobs ended per look at the queue's deadlines
SWEEP_MAX_S = 1.0  # the longest sleep between looks (other nodes' submits do not wake this one)


class ClusterNode:
    """Runs the cluster tasks of ``supervisor`` over ``shared``; see the module docstring."""

    def __init__(self, supervisor: Supervisor, shared: SharedStore, *, window: int) -> None:
        self._sup = supervisor
        self._shared = shared
        self._window = window
        self.entries: dict[str, str] = {}  # job id -> its queue entry, for the jobs held here
        self._room = anyio.Event()
        self._waiters: dict[str, anyio.Event] = {}
        self._to_settle: list[str] = []
        self._settle_wakeup = anyio.Event()
        self._parked: dict[str, deque[JobActor]] = {}
        self._freed: dict[str, int] = {}
        self._delivered = 0
        self._healthy_since = 0.0
        self._rng = random.Random()
        # Set when a take or reclaim failed: it may have leased jobs to this node all the same
        # (Redis handed them out, the reply was lost), which would then sit with no one running
        # them until their leases ran out; the puller looks at this node's leases first.
        self._unsure = False
        # Jobs running on another node that someone asked to cancel (oldest first, at most
        # CANCELS_KEPT): should that node die, the one taking the job over ends it cancelled,
        # rather than failing it as interrupted or running it again.
        self._cancels_asked: dict[str, None] = {}
        self._sweep_at = math.inf  # when the sweeper looks next (loop clock; inf: looking now)
        self._sweep_wakeup = anyio.Event()

    async def run(self, after: int) -> None:
        """Run the cluster tasks (until cancelled), following the log from offset ``after``."""
        self._delivered = after
        self._healthy_since = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow)
            tg.start_soon(self._pull)
            tg.start_soon(self._renew)
            tg.start_soon(self._reclaim)
            tg.start_soon(self._settle)
            tg.start_soon(self._sweep)

    # --- hooks the supervisor calls -------------------------------------------------------------

    def job_ended(self, job_id: str) -> None:
        """A job held here ended (or was dropped): its queue entry can go."""
        entry = self.entries.pop(job_id, None)
        if entry is not None:
            self._to_settle.append(entry)
            self._settle_wakeup.set()
        self._room.set()

    def queued_until(self, start_by: datetime) -> None:
        """A job submitted here must start by ``start_by``: the sweeper looks then at the latest."""
        left = (start_by - datetime.now(UTC)).total_seconds()
        if anyio.current_time() + left < self._sweep_at:
            self._sweep_wakeup.set()

    def generation(self, tool: str) -> int:
        """How many times a slot of ``tool`` was seen freed on the cluster (see ``park``)."""
        return self._freed.get(tool, 0)

    def park(self, actor: JobActor, generation: int) -> None:
        """``actor`` could not start: its tool is at its cap on the cluster. It waits for a slot
        to free up, unless one did since ``generation`` was read (then it is admitted at once)."""
        tool = actor.tool.name
        if self._freed.get(tool, 0) != generation:
            self._sup.reschedule(actor)
        else:
            self._parked.setdefault(tool, deque()).append(actor)

    async def wait(self, job_id: str, owner: str | None) -> JobRecord:
        """The job's record once terminal, wherever it runs."""
        while True:
            changed = self._watch(job_id)
            record = await self._sup.get(job_id, owner=owner)
            if record.state.terminal:
                return record
            await changed.wait()

    def _watch(self, job_id: str) -> anyio.Event:
        """The event the follower sets at the job's next change out of running (registered
        before the caller reads the record, so no change falls between the two)."""
        changed = self._waiters.get(job_id)
        if changed is None:
            changed = self._waiters[job_id] = anyio.Event()
        return changed

    async def cancel(self, job_id: str, owner: str | None) -> JobRecord:
        """Cancel the job wherever it is; see ``Supervisor.cancel``."""
        asked = False  # whether a running call was asked to stop: its end then answers
        while True:
            record = await self._sup.get(job_id, owner=owner)
            if record.state is JobState.CANCELLED and asked:
                return record
            if record.state.terminal:
                done = "finished {} first" if asked else "is already {}"
                raise JobFinished(f"job {job_id} {done.format(record.state)}", job_id=job_id)
            actor = self._sup.local_actor(job_id)
            if actor is not None:
                final = await self._cancel_here(actor)
                if final is not None:
                    return final
                asked = True  # superseded here by another node: cancel it where it went
            elif record.state is JobState.QUEUED:
                reason = queued_cancel_reason(record, CANCEL_REASON)
                ended = _ended(record, JobState.CANCELLED, OutcomeType.CANCELLED, reason)
                try:
                    await commit_change(self._sup, record, ended, "cancelled", at=ended.finished_at)
                except Superseded:
                    continue  # a node started it meanwhile: cancel it where it runs
                self._sup.registry.job_ended(ended)
                return ended
            else:
                await self._shared.request_cancel(job_id)
                asked = True
                await self._wait_moved(job_id, record, owner)

    async def _cancel_here(self, actor: JobActor) -> JobRecord | None:
        """Cancel the job held here: its cancelled record, or None when another node took it
        over meanwhile (``JobFinished`` when it ended otherwise)."""
        job_id = actor.id
        cancelled = await actor.cancel_requested()
        if cancelled is not None:
            return cancelled
        # The running call was asked to stop, so its end is the answer. Asking the actor again
        # could only find it stopped (it ended meanwhile, whatever a record read just before
        # said), which reads as "already cancelled" to the very cancel that stopped it.
        while not actor.record.state.terminal:
            if self._sup.local_actor(job_id) is not actor:
                return None
            await actor.done_event().wait()
        final = actor.record
        if final.state is not JobState.CANCELLED:
            raise JobFinished(f"job {job_id} finished {final.state} first", job_id=job_id)
        return final

    async def _wait_moved(self, job_id: str, seen: JobRecord, owner: str | None) -> None:
        """Return once the job is no longer as ``seen`` (running or queued as then)."""
        while True:
            changed = self._watch(job_id)
            record = await self._sup.get(job_id, owner=owner)
            if record.state.terminal or (record.state, record.attempt) != (
                seen.state,
                seen.attempt,
            ):
                return
            await changed.wait()

    async def hand_back(self) -> None:
        """At shutdown: the jobs still waiting here go back to the queue for the other nodes."""
        waiting = [
            (entry, job_id)
            for job_id, entry in self.entries.items()
            if (actor := self._sup.local_actor(job_id)) is not None
            and actor.record.state is JobState.QUEUED
        ]
        try:
            await self._shared.hand_back(waiting)
            await self._shared.settle(self._to_settle)
        except StoreError as exc:
            log.warning("queued jobs not handed back: they return after a lease", error=str(exc))
        self._to_settle.clear()
        try:
            await self._shared.retire()
        except StoreError as exc:
            log.warning("could not leave the work queue's consumer group", error=str(exc))

    # --- the tasks ------------------------------------------------------------------------------

    async def _follow(self) -> None:
        shared = self._shared
        bus = self._sup.bus
        failures = 0
        while True:
            try:
                followed = await shared.follow(self._delivered, block_s=BLOCK_S)
            except StoreError as exc:
                failures = await self._pause("following the event log", exc, failures)
                continue
            failures = 0
            for event in followed.events:
                self._delivered = event.offset
                bus.publish(event)
                self._observe(event)
            if followed.through is not None:  # past entries that could not be read
                self._delivered = max(self._delivered, followed.through)
            for job_id in followed.cancels:
                actor = self._sup.local_actor(job_id)
                if actor is not None and actor.record.state is JobState.RUNNING:
                    await _cancel_quietly(actor)
                elif actor is None:
                    self._remember_cancel(job_id)

    def _observe(self, event: JobEvent) -> None:
        data = event.data
        if data.state is JobState.RUNNING:
            return
        changed = self._waiters.pop(event.subject, None)
        if changed is not None:
            changed.set()
        if data.state.terminal or event.type.endswith(".retrying"):
            # The job may have held a slot of its tool's cluster-wide cap: let one waiter try.
            tool = data.tool
            self._freed[tool] = self._freed.get(tool, 0) + 1
            parked = self._parked.get(tool)
            if parked:
                self._sup.reschedule(parked.popleft())

    async def _pull(self) -> None:
        failures = 0
        while True:
            try:
                deliveries = await self._next_deliveries()
            except StoreError as exc:
                # The take may have gone through with only its reply lost (see ``_unsure``).
                self._unsure = True
                failures = await self._pause("taking jobs from the queue", exc, failures)
                continue
            failures = 0
            for delivery in deliveries:
                await self._accept(delivery)

    async def _next_deliveries(self) -> list[Delivery]:
        while not self._unsure:
            # Take no more than the runners can start now: a job held here waiting would wait
            # while another node has a runner free for it.
            load = self._sup.statistics()
            room = self._window - load.queued - load.running
            if room > 0:
                return await self._shared.take(room, block_s=BLOCK_S)
            self._room = anyio.Event()
            await self._room.wait()
        deliveries = await self._shared.retake()
        self._unsure = False
        return deliveries

    async def _renew(self) -> None:
        period = self._shared.lease_s / 3
        while True:
            await anyio.sleep(period)
            entries = list(self.entries.values())
            try:
                lost = set(await self._shared.renew(entries))
            except StoreError as exc:
                log.warning("could not renew leases", error=str(exc))
                self._healthy_since = math.inf
                continue
            if self._healthy_since == math.inf:
                self._healthy_since = time.monotonic()
            if lost:
                log.warning("leases lost to other nodes; their jobs run there", count=len(lost))
                for job_id, entry in list(self.entries.items()):
                    if entry in lost:
                        del self.entries[job_id]

    async def _reclaim(self) -> None:
        lease = self._shared.lease_s
        while True:
            await anyio.sleep(lease / 2 * (0.75 + self._rng.random() / 2))
            # After an outage, renew first: the other nodes' leases aged while nobody could
            # renew them, and taking over jobs that are still running would only run them twice.
            if time.monotonic() - self._healthy_since < lease / 3:
                continue
            try:
                deliveries = await self._shared.reclaim(RECLAIM_BATCH)
            except StoreError as exc:
                log.warning("could not reclaim expired leases", error=str(exc))
                self._unsure = True
                self._room.set()
                continue
            for delivery in deliveries:
                await self._accept(delivery)

    async def _settle(self) -> None:
        while True:
            await self._settle_wakeup.wait()
            self._settle_wakeup = anyio.Event()
            while self._to_settle:
                batch = self._to_settle[:SETTLE_BATCH]
                try:
                    await self._shared.settle(batch)
                except StoreError as exc:
                    log.warning("could not acknowledge finished jobs", error=str(exc))
                    break
                del self._to_settle[: len(batch)]

    async def _sweep(self) -> None:
        failures = 0
        while True:
            # A submit while this looks wakes the sleep after it: the look may have missed it.
            self._sweep_wakeup = anyio.Event()
            self._sweep_at = math.inf
            try:
                upcoming = await self._sweep_due()
            except StoreError as exc:
                failures = await self._pause("looking for queued jobs out of time", exc, failures)
                continue
            failures = 0
            wait = SWEEP_MAX_S
            if upcoming is not None:
                wait = min(wait, (upcoming - datetime.now(UTC)).total_seconds())
            self._sweep_at = anyio.current_time() + wait
            with anyio.move_on_after(max(0.0, wait)):
                await self._sweep_wakeup.wait()

    async def _sweep_due(self) -> datetime | None:
        """End every due job this node may end; returns the next deadline (None: none known).

        The due jobs come earliest first, a batch at a time; those that stay due (held by a
        node, whose own alarm ends them; due only by a clock ahead of this node's) are paged
        past, so they hold back none behind them.
        """
        kept = 0
        while True:
            overdue = await self._shared.overdue(datetime.now(UTC), SWEEP_BATCH, skip=kept)
            for record in overdue.records:
                if await self._expire(record):
                    kept += 1
            if len(overdue.records) < SWEEP_BATCH:
                return overdue.next

    async def _expire(self, record: JobRecord) -> bool:
        """End ``record``, found queued past its time to start, as its own node's alarm would
        (cancelled, error type ``timeout``); returns whether it stays among the due jobs."""
        sup = self._sup
        if sup.local_actor(record.id) is not None:
            return True  # held here: its own alarm ends it
        now = datetime.now(UTC)
        try:
            tool = sup.registry.available_tool(record.tool)
        except ToolNotFound:
            # Its time is up whichever node ends it; one that lacks the tool (a deploy half
            # done, a plugin that failed to start) cannot say which limit ran out.
            message = f"{record.tool} ran out of time to start while no node could start it"
        else:
            if start_limits.start_left(tool, record, now) > 0:
                return True  # this node's clock is behind the submitter's: its turn comes
            message = start_limits.unstarted_message(tool, record, now)
        ended = _ended(record, JobState.CANCELLED, OutcomeType.TIMEOUT, message)
        try:
            await commit_change(sup, record, ended, "cancelled", at=ended.finished_at)
        except Superseded:
            return False  # a node started or ended it meanwhile: it left the due jobs
        except StoreError as exc:
            log.warning("could not end a queued job out of time", job_id=record.id, error=str(exc))
            return True
        sup.registry.job_ended(ended)
        return False

    async def _pause(self, doing: str, exc: StoreError, failures: int) -> int:
        pause = min(MAX_PAUSE_S, 0.05 * 2**failures) * (0.5 + self._rng.random() / 2)
        if failures == 0:
            log.warning(f"store unreachable while {doing}; retrying", error=str(exc))
        await anyio.sleep(pause)
        return failures + 1

    # --- a delivered job --------------------------------------------------------------------------

    async def _accept(self, delivery: Delivery) -> None:
        """Run, settle or give up on a job the queue handed to this node."""
        record = delivery.record
        held = self.entries.get(delivery.job_id)
        if held == delivery.entry:
            return  # our own lease, reclaimed after renewals failed: we hold it still
        if record is None or record.state.terminal or held is not None:
            await self._settle_now(delivery.entry)
            return
        self.entries[delivery.job_id] = delivery.entry
        try:
            actor = await self._actor_for(record, delivery.deliveries)
        except Superseded:
            actor = None
        except StoreError as exc:
            # Leave the lease to expire: the job comes back to some node then.
            log.warning("could not take a job over", job_id=record.id, error=str(exc))
            del self.entries[delivery.job_id]
            return
        if actor is None:
            self.job_ended(delivery.job_id)
        else:
            self._sup.admit(actor)

    async def _actor_for(self, record: JobRecord, deliveries: int) -> JobActor | None:
        """A queued actor for ``record``, settling it first when it was cut off or given up on."""
        sup = self._sup
        try:
            tool = sup.registry.available_tool(record.tool)
            args = tool.validate_input(record.input)
        except (ToolNotFound, InvalidInput) as exc:
            reason = f"cannot run on node {self._shared.node}: {exc}"
            await self._end(record, JobState.CANCELLED, OutcomeType.INTERRUPTED, reason)
            return None
        if deliveries > self._shared.max_deliveries:
            # The failure and its dead-letter note are one write: a note made apart from it, after
            # the failure was visible, was lost whenever the node stopped (or lost Redis) between
            # the two, and the job, failed by then, was never delivered again to make it.
            message = DEAD_LETTER.format(n=deliveries - 1)
            await self._end(record, JobState.FAILED, OutcomeType.CRASHED, message, deliveries)
            log.error("job dead-lettered", job_id=record.id, deliveries=deliveries)
            return None
        if record.state is JobState.RUNNING:
            if record.id in self._cancels_asked:
                del self._cancels_asked[record.id]
                await self._end(record, JobState.CANCELLED, OutcomeType.CANCELLED, CANCELLED_AWAY)
                return None
            if not tool.retry_on_interrupt:
                await self._end(record, JobState.FAILED, OutcomeType.INTERRUPTED, INTERRUPTED)
                return None
            again = next_attempt(record)
            start_by = start_limits.start_deadline(tool, again, datetime.now(UTC))
            await commit_change(
                sup, record, again, "retrying", message=INTERRUPTED, start_by=start_by
            )
            record = again
        return JobActor(sup, record, tool, args)

    def _remember_cancel(self, job_id: str) -> None:
        asked = self._cancels_asked
        asked[job_id] = None
        if len(asked) > CANCELS_KEPT:
            del asked[next(iter(asked))]

    async def _end(
        self,
        record: JobRecord,
        state: JobState,
        kind: OutcomeType,
        message: str,
        deliveries: int | None = None,
    ) -> None:
        """End ``record`` here; with ``deliveries``, it is dead-lettered by the same write."""
        details: dict[str, object] = {"attempt": record.attempt}
        if deliveries is not None:
            details["deliveries"] = deliveries
        ended = _ended(record, state, kind, message, details)
        await commit_change(
            self._sup,
            record,
            ended,
            state.value,
            at=ended.finished_at,
            dead_letter=deliveries,
        )
        self._sup.registry.job_ended(ended)

    async def _settle_now(self, entry: str) -> None:
        try:
            await self._shared.settle([entry])
        except StoreError as exc:
            log.warning("could not acknowledge a finished job", error=str(exc))


def _ended(
    record: JobRecord,
    state: JobState,
    kind: OutcomeType,
    message: str,
    details: dict[str, object] | None = None,
) -> JobRecord:
    now = datetime.now(UTC)
    error = ErrorInfo(
        type=kind,
        message=message,
        details=details or {},
        plugin=record.plugin,
        tool=record.tool,
        job_id=record.id,
        timestamp=now,
    )
    return msgspec.structs.replace(record, state=state, error=error, finished_at=now)


async def _cancel_quietly(actor: JobActor) -> None:
    try:
        await actor.cancel(CANCEL_REASON)
    except (JobFinished, StoreError):
        return  # it ended meanwhile, or its own write will say what happened
