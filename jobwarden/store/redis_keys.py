"""The Redis store's key layout, in one place for Python and (as ``LUA_KEYS``) for its scripts.

Every key starts with ``<prefix>:``. Records are hashes; listing indexes are sorted sets whose
members are job ids, all with score 0, so they sort by id (fixed-width hex, ordered by creation)
and a page is one ``ZRANGE ... BYLEX REV LIMIT`` read; the event log is a stream whose entry ids
are ``<offset>-0``::

    <p>:meta                       hash    schema (layout version), last (newest offset written),
                                           lost_below? (a write found last below what it read)
    <p>:job:<id>                   hash    record (JSON), state, tool, plugin, owner?, seq (first
                                           offset), idem? (its idempotency field), done_at? (us)
    <p>:job:<id>:events            zset    the job's event offsets (score = member = offset)
    <p>:jobs                       zset    every job id (lex)
    <p>:jobs:seq                   zset    every job id, score = its first event's offset
    <p>:jobs:state:<state>         zset    ids in that state (lex)
    <p>:jobs:tool:<tool>           zset    ids of that tool (lex)
    <p>:jobs:plugin:<plugin>       zset    ids of that plugin (lex)
    <p>:jobs:owner:<owner>         zset    ids of that owner (lex); jobs without owner: none
    <p>:jobs:owner-state:<state>:<owner>   ids of that owner in that state (lex)
    <p>:jobs:done-at               zset    finished ids, score = finished_at in microseconds
    <p>:idempotency                hash    JSON [owner, key] -> job id
    <p>:events                     stream  entries <offset>-0 {job, tool, body (CloudEvent JSON)}
    <p>:running:<tool>             zset    ids of that tool's running jobs (for cluster-wide caps)
    <p>:queue                      stream  the work queue: entries {job, record}, group ``workers``
    <p>:queue:deadlines            zset    ids of queued jobs whose tool limits the wait to start,
                                           score = when it runs out (wall clock, microseconds)
    <p>:control                    stream  requests to every node: entries {op: cancel, job}
    <p>:dead                       stream  dead-lettered jobs: entries {job, deliveries, node}

The owner comes last in the owner-state key, so an owner containing ``:`` cannot collide.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

SCHEMA = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(moment: datetime) -> int:
    """A time as the layout's scores hold it: exact microseconds since the epoch (a naive time is
    taken as UTC)."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return (aware - _EPOCH) // _MICROSECOND


def from_micros(score: bytes | str | float) -> datetime:
    """A score (microseconds since the epoch, as Redis returns it) as a UTC time."""
    return _EPOCH + timedelta(microseconds=int(float(score)))


class Keys:
    """The keys of one prefix."""

    __slots__ = (
        "all_jobs",
        "control",
        "dead",
        "done_at",
        "events",
        "idempotency",
        "meta",
        "prefix",
        "queue",
        "queue_deadlines",
        "seq",
    )

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.meta = f"{prefix}:meta"
        self.all_jobs = f"{prefix}:jobs"
        self.seq = f"{prefix}:jobs:seq"
        self.done_at = f"{prefix}:jobs:done-at"
        self.idempotency = f"{prefix}:idempotency"
        self.events = f"{prefix}:events"
        self.queue = f"{prefix}:queue"
        self.queue_deadlines = f"{prefix}:queue:deadlines"
        self.control = f"{prefix}:control"
        self.dead = f"{prefix}:dead"

    def job(self, job_id: str) -> str:
        """The job's record hash."""
        return f"{self.prefix}:job:{job_id}"

    def job_events(self, job_id: str) -> str:
        """The offsets of the job's events."""
        return f"{self.prefix}:job:{job_id}:events"

    def state(self, state: str) -> str:
        """Ids of the jobs in ``state``."""
        return f"{self.prefix}:jobs:state:{state}"

    def tool(self, tool: str) -> str:
        """Ids of the jobs of ``tool``."""
        return f"{self.prefix}:jobs:tool:{tool}"

    def plugin(self, plugin: str) -> str:
        """Ids of the jobs of ``plugin``."""
        return f"{self.prefix}:jobs:plugin:{plugin}"

    def owner(self, owner: str) -> str:
        """Ids of the jobs of ``owner``."""
        return f"{self.prefix}:jobs:owner:{owner}"

    def owner_state(self, owner: str, state: str) -> str:
        """Ids of the jobs of ``owner`` in ``state``."""
        return f"{self.prefix}:jobs:owner-state:{state}:{owner}"

    def running(self, tool: str) -> str:
        """Ids of the running jobs of ``tool``."""
        return f"{self.prefix}:running:{tool}"


# The same layout for the Lua scripts: each script's ARGV[1] is the prefix. A test evaluates
# these functions and compares them with ``Keys``, so the two cannot drift apart.
LUA_KEYS = """
local P = ARGV[1]
local K = {
  meta = P .. ':meta',
  all_jobs = P .. ':jobs',
  seq = P .. ':jobs:seq',
  done_at = P .. ':jobs:done-at',
  idempotency = P .. ':idempotency',
  events = P .. ':events',
  queue = P .. ':queue',
  queue_deadlines = P .. ':queue:deadlines',
  control = P .. ':control',
  dead = P .. ':dead',
}
function K.job(id) return P .. ':job:' .. id end
function K.job_events(id) return P .. ':job:' .. id .. ':events' end
function K.state(state) return P .. ':jobs:state:' .. state end
function K.tool(tool) return P .. ':jobs:tool:' .. tool end
function K.plugin(plugin) return P .. ':jobs:plugin:' .. plugin end
function K.owner(owner) return P .. ':jobs:owner:' .. owner end
function K.owner_state(owner, state) return P .. ':jobs:owner-state:' .. state .. ':' .. owner end
function K.running(tool) return P .. ':running:' .. tool end
"""
