"""Recovery at start: the jobs a durable store holds unfinished become live job actors again.

Queued jobs are queued again in their original order. A job found running was cut off when the
process died: it is queued again as a new attempt (a ``retrying`` event) if its tool says
``retry_on_interrupt``, and fails with error type ``interrupted`` otherwise. A job whose tool is
no longer loaded, or whose input no longer fits its tool, is cancelled (also ``interrupted``) with
a message saying why. Every change is stored and published like any other transition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import msgspec
import structlog

from jobwarden.actors.job_actor import JobActor, JobHost, commit_change, next_attempt
from jobwarden.actors.states import JobState
from jobwarden.errors import ErrorInfo, InvalidInput, OutcomeType, ToolNotFound
from jobwarden.plugins.registry import PluginRegistry
from jobwarden.records import JobRecord

log = structlog.get_logger("jobwarden.recovery")

INTERRUPTED = "the server stopped while the job was running"


class Recovered(msgspec.Struct, frozen=True):
    """What recovery did, by outcome."""

    requeued: int = 0
    retried: int = 0
    interrupted: int = 0
    abandoned: int = 0
    expired: int = 0
    """Queued jobs whose queue timeout or total timeout ran out before the restart: admitted,
    they end at once (cancelled, error type ``timeout``) without running."""


async def recover(
    host: JobHost,
    registry: PluginRegistry,
    records: Iterable[JobRecord],
    admit: Callable[[JobActor], None],
) -> Recovered:
    """Settle each unfinished record (oldest first) and ``admit`` an actor for each that runs."""
    counts = {"requeued": 0, "retried": 0, "interrupted": 0, "abandoned": 0, "expired": 0}
    now = datetime.now(UTC)
    for record in records:
        try:
            tool = registry.available_tool(record.tool)
            args = tool.validate_input(record.input)
        except (ToolNotFound, InvalidInput) as exc:
            reason = f"cannot run after the restart: {exc}"
            registry.job_ended(await _end(host, record, JobState.CANCELLED, reason))
            counts["abandoned"] += 1
            continue
        if record.state is JobState.RUNNING:
            if not tool.retry_on_interrupt:
                registry.job_ended(await _end(host, record, JobState.FAILED, INTERRUPTED))
                counts["interrupted"] += 1
                continue
            again = next_attempt(record)
            await commit_change(host, record, again, "retrying", message=INTERRUPTED)
            actor = JobActor(host, again, tool, args)
            counts["retried"] += 1
        else:
            actor = JobActor(host, record, tool, args)
            expired = actor.start_left(now) <= 0
            counts["expired" if expired else "requeued"] += 1
        admit(actor)
    summary = Recovered(**counts)
    if summary != Recovered():
        log.info("recovered unfinished jobs", **counts)
    return summary


async def _end(host: JobHost, record: JobRecord, state: JobState, message: str) -> JobRecord:
    now = datetime.now(UTC)
    error = ErrorInfo(
        type=OutcomeType.INTERRUPTED,
        message=message,
        details={"attempt": record.attempt},
        plugin=record.plugin,
        tool=record.tool,
        job_id=record.id,
        timestamp=now,
    )
    ended = msgspec.structs.replace(record, state=state, error=error, finished_at=now)
    await commit_change(host, record, ended, state.value, at=now)
    return ended
