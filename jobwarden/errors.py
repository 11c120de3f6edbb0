"""The exception tree and the error envelope.

Every error jobwarden raises is a ``JobwardenError``; each layer translates what it catches into
one of these with ``raise ... from exc``, so callers handle a small, stable set::

    JobwardenError
    ├── RequestError                 a request was refused; carries an envelope type and HTTP status
    │   ├── InvalidRequest           400 invalid_request
    │   ├── InvalidInput             400 invalid_input (no job was created)
    │   ├── NotFound                 404 not_found
    │   │   ├── ToolNotFound         404 tool_not_found
    │   │   └── JobNotFound          404 job_not_found
    │   ├── JobNotFinished           409 job_not_finished
    │   ├── JobFinished              409 job_finished
    │   ├── Overloaded               429 overloaded (retry_after_s)
    │   └── ShuttingDown             503 shutting_down
    │       └── StoreUnavailable     503 shutting_down, details.reason "store_unavailable"
    ├── JobFailed                    Supervisor.run: the job ended in failed / timed_out / cancelled
    ├── ActorStopped                 an ask reached a stopped actor (like pykka's ActorDeadError)
    ├── MailboxFull                  a bounded mailbox refused a message without waiting
    ├── SubscriberOverflow           an event subscriber fell behind and was dropped
    ├── SupervisorCrashed            runner restarts exceeded the restart intensity, or the store
    │                                refused a job's write or failed for good (SQLite: writer ended)
    ├── StoreError                   the job store cannot be opened, read or written
    ├── RegistrationError            a plugin or tool definition is invalid (also a TypeError)
    └── IllegalTransition            a job state transition outside the table: always a bug

Job outcome types, found in ``JobRecord.error.type``: see ``OutcomeType``.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

if TYPE_CHECKING:
    from jobwarden.records import JobRecord


class OutcomeType(StrEnum):
    """Error types a job can end with (``JobRecord.error.type``)."""

    PLUGIN_ERROR = "plugin_error"
    INVALID_OUTPUT = "invalid_output"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    CRASHED = "crashed"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    INTERRUPTED = "interrupted"
    CIRCUIT_OPEN = "circuit_open"


def plugin_failure(exc: BaseException, cancelled: type[BaseException] | None = None) -> bool:
    """Whether ``exc``, raised by plugin code, fails only what that code was doing.

    True of everything but ``KeyboardInterrupt`` (a real Ctrl-C can surface inside plugin code
    on trio) and, when given, the backend's ``cancelled`` exception: any ``Exception``; the
    ``SystemExit`` of a plugin's ``sys.exit()`` or argparse's usage error; a plugin's own
    ``BaseException`` subclass; ``GeneratorExit``. None of them may stop the server. A group is
    one when everything in it is.
    """
    if isinstance(exc, BaseExceptionGroup):
        return all(plugin_failure(inner, cancelled) for inner in exc.exceptions)
    if isinstance(exc, KeyboardInterrupt):
        return False
    return cancelled is None or not isinstance(exc, cancelled)


def printable(text: str) -> str:
    """``text`` with each lone surrogate written as its escape (``\\udcff``), other text as is.

    What plugin code puts in a message (an exception's text, a file name decoded with
    surrogateescape) must not stop the record or event carrying it from being stored or sent as
    JSON, which has no way to hold a lone surrogate.
    """
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def control_character(text: str) -> str | None:
    """Where ``text`` holds its first control character, which an HTTP header cannot carry
    (``"U+000A at character 6"``), or None when it holds none."""
    for n, char in enumerate(text, 1):
        if unicodedata.category(char) == "Cc":
            return f"U+{ord(char):04X} at character {n}"
    return None


NESTED_TOO_DEEP = "nested too deeply for JSON, or holds itself"
"""Why a value past the recursion limit, or holding itself, cannot be encoded."""


def unencodable(exc: UnicodeEncodeError | RecursionError) -> str:
    """Why a tool's value cannot be encoded, for its ``invalid_output`` message."""
    if isinstance(exc, UnicodeEncodeError):
        # A str holding a lone surrogate (bytes decoded with surrogateescape, as os.listdir
        # gives undecodable file names) converts, but no JSON can carry it: every later read
        # or event of the job would fail.
        return f"it holds a string that is not valid Unicode ({exc.reason})"
    return f"it is {NESTED_TOO_DEEP}"


def describe(exc: BaseException) -> str:
    """``"Type: message"`` for an exception plugin code raised, made ``printable``.

    An exception whose ``__str__`` itself raises is named with a note instead of its message (a
    failure while describing a plugin's failure would crash the runner); only a
    ``KeyboardInterrupt`` goes on.
    """
    try:
        text = str(exc)
    except BaseException as failure:
        if not plugin_failure(failure):
            raise
        text = f"<its message could not be read: {type(failure).__name__}>"
    return printable(f"{type(exc).__name__}: {text}")


class ErrorInfo(msgspec.Struct, frozen=True, gc=False):
    """The body of an error envelope: what went wrong, where, and when."""

    type: str
    message: str
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    plugin: str | None = None
    tool: str | None = None
    job_id: str | None = None
    timestamp: datetime = msgspec.field(default_factory=lambda: datetime.now(UTC))


class ErrorEnvelope(msgspec.Struct, frozen=True):
    """The wire form of every error response: ``{"error": {...}}``."""

    error: ErrorInfo


class JobwardenError(Exception):
    """Base of every exception jobwarden raises."""


class RequestError(JobwardenError):
    """A request was refused before or instead of doing its work."""

    type: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400

    def __init__(
        self,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        plugin: str | None = None,
        tool: str | None = None,
        job_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.plugin = plugin
        self.tool = tool
        self.job_id = job_id

    def info(self) -> ErrorInfo:
        """This error as an envelope body."""
        return ErrorInfo(
            type=self.type,
            message=self.message,
            details=self.details,
            plugin=self.plugin,
            tool=self.tool,
            job_id=self.job_id,
        )


class InvalidRequest(RequestError):
    """The request itself is malformed."""


class InvalidInput(RequestError):
    """The tool input does not match the tool's input type; no job was created."""

    type = "invalid_input"


class NotFound(RequestError):
    """Nothing exists under that name."""

    type = "not_found"
    status = 404


class ToolNotFound(NotFound):
    """No registered tool has that name."""

    type = "tool_not_found"


class JobNotFound(NotFound):
    """No job with that id is visible."""

    type = "job_not_found"


class JobNotFinished(RequestError):
    """The job has no result yet."""

    type = "job_not_finished"
    status = 409


class JobFinished(RequestError):
    """The job is already in a terminal state."""

    type = "job_finished"
    status = 409


class Overloaded(RequestError):
    """Admission refused: the queue is full. Retry after ``retry_after_s``."""

    type = "overloaded"
    status = 429

    def __init__(self, message: str, *, retry_after_s: float = 1.0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class ShuttingDown(RequestError):
    """The supervisor no longer admits jobs."""

    type = "shutting_down"
    status = 503


class StoreUnavailable(ShuttingDown):
    """The store refused a write (disk full, file unwritable: nothing was accepted), or could not
    answer a read (a damaged row, a lost connection).

    To clients it is a 503 ``shutting_down`` like any node that cannot take work right now, with
    ``details.reason`` saying why; retry later or on another node.
    """

    def __init__(self, message: str, *, retry_after_s: float = 5.0, **kw: Any) -> None:
        super().__init__(message, details={"reason": "store_unavailable"}, **kw)
        self.retry_after_s = retry_after_s


class JobFailed(JobwardenError):
    """``Supervisor.run`` finished with a job that did not succeed."""

    def __init__(self, record: JobRecord) -> None:
        error = record.error
        reason = f"{error.type}: {error.message}" if error else record.state
        super().__init__(f"job {record.id} ({record.tool}) ended {record.state}: {reason}")
        self.record = record
        self.error = error


class ActorStopped(JobwardenError):
    """The actor has stopped; the message was not and will not be processed."""


class MailboxFull(JobwardenError):
    """A bounded mailbox is at capacity."""


class SubscriberOverflow(JobwardenError):
    """A subscriber's buffer overflowed; resume with ``since=last_offset``."""

    def __init__(self, message: str, *, last_offset: int) -> None:
        super().__init__(message)
        self.last_offset = last_offset


class SupervisorCrashed(JobwardenError):
    """The supervisor stopped: its runners crashed more often than the restart intensity allows,
    or its store refused a job's write (the job's outcome could not be recorded) or failed for
    good (a SQLite store's writer process ended: killed, or its file removed or replaced)."""


class StoreError(JobwardenError):
    """The job store cannot be opened, read or written; the message names the file and why."""


class RegistrationError(JobwardenError, TypeError):
    """A plugin or tool definition is invalid."""


class IllegalTransition(JobwardenError, RuntimeError):
    """A state change outside the transition table was attempted: a bug in jobwarden."""
