"""The records that cross every layer: a job's record and the CloudEvents that describe it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from jobwarden.actors.states import JobState
from jobwarden.errors import ErrorInfo


class JobRecord(msgspec.Struct, frozen=True, gc=False):
    """Everything known about one job; each change produces a new record.

    In process, a record is a shared, read-only view: the Struct is frozen, but the ``input``,
    ``result`` and ``error.details`` it holds are the very dicts and lists of the job's other
    records, its events and the memory store, not copies. Copy one before changing it
    (``copy.deepcopy``): mutating it changes what later reads and replays return.
    """

    id: str
    tool: str
    plugin: str
    state: JobState
    input: Any
    created_at: datetime
    attempt: int = 1
    result: Any = None
    error: ErrorInfo | None = None
    progress: float | None = None
    owner: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    idempotency_key: str | None = None
    timeout_s: float | None = None
    # When the current attempt, a retry, became due to start (queued again plus its backoff):
    # its queue timeout counts from here, as a first attempt's counts from created_at. None for a
    # first attempt, and in records stored before retries noted it.
    retry_at: datetime | None = None


class EventData(msgspec.Struct, frozen=True, gc=False):
    """The ``data`` member of a job event."""

    job_id: str
    tool: str
    state: JobState
    attempt: int
    progress: float | None = None
    message: str | None = None
    result: Any = None
    error: ErrorInfo | None = None
    owner: str | None = None


class JobEvent(msgspec.Struct, frozen=True, gc=False):
    """One CloudEvent 1.0 (JSON structured mode). ``id`` is the global offset as a string."""

    id: str
    source: str
    type: str
    subject: str
    time: datetime
    data: EventData
    specversion: str = "1.0"
    datacontenttype: str = "application/json"

    @property
    def offset(self) -> int:
        """The global, strictly increasing position of this event."""
        return int(self.id)


class ResetData(msgspec.Struct, frozen=True, gc=False):
    """Why a resuming subscriber missed events: the history before ``first_retained`` is gone."""

    requested_since: int
    first_retained: int


class StreamReset(msgspec.Struct, frozen=True, gc=False):
    """Sent first, instead of silence, when ``since`` is older than the retained history."""

    id: str
    source: str
    subject: str
    time: datetime
    data: ResetData
    type: str = "jobwarden.stream.reset"
    specversion: str = "1.0"
    datacontenttype: str = "application/json"

    @property
    def offset(self) -> int:
        """Resume from here: the offset just before the oldest retained event."""
        return int(self.id)


StreamEvent = JobEvent | StreamReset
EVENT_TYPE_PREFIX = "jobwarden.job."

_encode = msgspec.json.Encoder().encode
_CALLERS_PARTS = ("input", "owner", "idempotency key")


UNSTORABLE = (UnicodeEncodeError, RecursionError, TypeError)
"""What encoding a record raises when no JSON can hold what the caller gave."""


def check_storable(record: JobRecord) -> None:
    """Raise one of ``UNSTORABLE`` when what the caller gave (the input, the owner or the
    idempotency key) no JSON can hold, so every later read of the job would fail: a string that
    is not valid Unicode (a lone surrogate, as bytes decoded with ``surrogateescape`` give), an
    input nested past the recursion limit or holding itself, or a value of a type JSON has none
    for (a set, an object), which an input type's ``Any`` field lets through.

    The stores that write JSON raise the same from their encode; the memory store calls this.
    """
    _encode((record.input, record.owner, record.idempotency_key))


def unstorable_part(record: JobRecord) -> str | None:
    """Which of the caller's values no JSON can hold: "input", "owner", "idempotency key", or
    None when each encodes."""
    values = (record.input, record.owner, record.idempotency_key)
    return next(
        (part for part, value in zip(_CALLERS_PARTS, values, strict=True) if not _encodes(value)),
        None,
    )


def _encodes(value: Any) -> bool:
    try:
        _encode(value)
    except UNSTORABLE:
        return False
    return True
