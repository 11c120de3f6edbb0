"""The exception tree and the error envelope, against DESIGN.md."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgspec
import pytest

from jobwarden import errors
from jobwarden.actors.states import JobState
from jobwarden.records import JobRecord
from tests.fakes import UNDECODABLE, Unreadable

# DESIGN.md, "Error envelope": request error type -> HTTP status (plus the last-resort internal).
DOCUMENTED_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "invalid_input": 400,
    "unsupported_media_type": 415,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "tool_not_found": 404,
    "job_not_found": 404,
    "method_not_allowed": 405,
    "job_not_finished": 409,
    "job_finished": 409,
    "payload_too_large": 413,
    "overloaded": 429,
    "rate_limited": 429,
    "shutting_down": 503,
    "internal": 500,
}
DOCUMENTED_OUTCOMES = {
    "plugin_error",
    "invalid_output",
    "timeout",
    "cancelled",
    "crashed",
    "resource_exhausted",
    "interrupted",
    "circuit_open",
}
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def all_request_errors() -> list[type[errors.RequestError]]:
    """RequestError and every subclass of it, however deep."""
    found: list[type[errors.RequestError]] = []
    pending: list[type[errors.RequestError]] = [errors.RequestError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_the_known_request_errors_are_all_found() -> None:
    """The subclass walk below sees at least the request errors errors.py draws."""
    names = {cls.__name__ for cls in all_request_errors()}
    assert names >= {
        "RequestError",
        "InvalidRequest",
        "InvalidInput",
        "NotFound",
        "ToolNotFound",
        "JobNotFound",
        "JobNotFinished",
        "JobFinished",
        "Overloaded",
        "ShuttingDown",
    }


@pytest.mark.parametrize("cls", all_request_errors(), ids=lambda cls: cls.__name__)
def test_request_error_type_and_status_match_the_design(cls: type[errors.RequestError]) -> None:
    """Every RequestError subclass carries a documented type with its documented HTTP status."""
    assert cls.type in DOCUMENTED_STATUS, f"{cls.__name__}.type {cls.type!r} is not documented"
    assert cls.status == DOCUMENTED_STATUS[cls.type]


@pytest.mark.parametrize(
    ("cls", "type_", "status"),
    [
        (errors.InvalidRequest, "invalid_request", 400),
        (errors.InvalidInput, "invalid_input", 400),
        (errors.NotFound, "not_found", 404),
        (errors.ToolNotFound, "tool_not_found", 404),
        (errors.JobNotFound, "job_not_found", 404),
        (errors.JobNotFinished, "job_not_finished", 409),
        (errors.JobFinished, "job_finished", 409),
        (errors.Overloaded, "overloaded", 429),
        (errors.ShuttingDown, "shutting_down", 503),
    ],
)
def test_each_drawn_request_error(cls: type[errors.RequestError], type_: str, status: int) -> None:
    """Each request error drawn in errors.py has its documented type and status on instances."""
    exc = cls("message")
    assert (exc.type, exc.status) == (type_, status)
    assert isinstance(exc, errors.RequestError)
    assert isinstance(exc, errors.JobwardenError)


def test_not_found_family() -> None:
    """ToolNotFound and JobNotFound can be caught as NotFound."""
    assert issubclass(errors.ToolNotFound, errors.NotFound)
    assert issubclass(errors.JobNotFound, errors.NotFound)


def test_outcome_types_are_the_documented_ones() -> None:
    """OutcomeType holds exactly the job outcome types DESIGN.md lists."""
    assert {o.value for o in errors.OutcomeType} == DOCUMENTED_OUTCOMES


def test_info_builds_the_envelope_body() -> None:
    """info() carries type, message, details, plugin, tool and job_id, stamped now in UTC."""
    before = datetime.now(UTC)
    exc = errors.InvalidInput(
        "bad", details={"field": "text"}, plugin="demo", tool="demo.echo", job_id="j1"
    )
    info = exc.info()
    assert isinstance(info, errors.ErrorInfo)
    assert (info.type, info.message, info.details) == ("invalid_input", "bad", {"field": "text"})
    assert (info.plugin, info.tool, info.job_id) == ("demo", "demo.echo", "j1")
    assert info.timestamp.tzinfo is not None
    assert before <= info.timestamp <= datetime.now(UTC)


def test_info_defaults() -> None:
    """Without extras, info() has empty details and null plugin, tool and job_id."""
    info = errors.JobNotFinished("not yet").info()
    assert (info.type, info.message, info.details) == ("job_not_finished", "not yet", {})
    assert (info.plugin, info.tool, info.job_id) == (None, None, None)


def test_request_error_attributes_and_str() -> None:
    """A request error's str() is its message; extras are kept as attributes."""
    exc = errors.JobNotFound("no job 'x'", job_id="x")
    assert str(exc) == exc.message == "no job 'x'"
    assert exc.job_id == "x"
    assert exc.details == {}


def test_envelope_encodes_to_the_documented_shape() -> None:
    """ErrorEnvelope encodes to exactly the documented JSON members, in the documented order."""
    documented = json.loads(
        """{"error": {"type": "invalid_input", "message": "Expected `str`, got `int` - at `$.text`",
           "details": {}, "plugin": "demo", "tool": "demo.echo", "job_id": null,
           "timestamp": "2026-01-01T00:00:00.000Z"}}"""
    )
    info = errors.ErrorInfo(
        type="invalid_input",
        message="Expected `str`, got `int` - at `$.text`",
        plugin="demo",
        tool="demo.echo",
        timestamp=WHEN,
    )
    encoded = json.loads(msgspec.json.encode(errors.ErrorEnvelope(error=info)))
    assert list(encoded) == list(documented) == ["error"]
    assert list(encoded["error"]) == list(documented["error"])
    stamp = encoded["error"].pop("timestamp")
    documented_stamp = documented["error"].pop("timestamp")
    assert encoded == documented
    assert stamp.endswith("Z")
    assert datetime.fromisoformat(stamp) == datetime.fromisoformat(documented_stamp) == WHEN


def test_envelope_round_trips() -> None:
    """An encoded envelope decodes back to an equal envelope."""
    envelope = errors.ErrorEnvelope(
        error=errors.Overloaded("full", details={"queued": 3}, tool="demo.echo").info()
    )
    decoded = msgspec.json.decode(msgspec.json.encode(envelope), type=errors.ErrorEnvelope)
    assert decoded == envelope


def test_overloaded_retry_after() -> None:
    """Overloaded carries retry_after_s (1.0 by default) and the usual extras."""
    assert errors.Overloaded("full").retry_after_s == 1.0
    exc = errors.Overloaded("full", retry_after_s=2.5, tool="demo.echo", details={"queued": 9})
    assert exc.retry_after_s == 2.5
    assert (exc.tool, exc.details, exc.message) == ("demo.echo", {"queued": 9}, "full")
    assert exc.info().type == "overloaded"


def _record(state: JobState, error: errors.ErrorInfo | None) -> JobRecord:
    return JobRecord(
        id="0123",
        tool="demo.echo",
        plugin="demo",
        state=state,
        input={},
        created_at=WHEN,
        error=error,
    )


def test_job_failed_message_names_the_error_type() -> None:
    """JobFailed's message names the job, tool, final state, error type and message."""
    error = errors.ErrorInfo(type="timeout", message="took longer than 5s", timestamp=WHEN)
    record = _record(JobState.TIMED_OUT, error)
    exc = errors.JobFailed(record)
    text = str(exc)
    for part in ("0123", "demo.echo", "timed_out", "timeout", "took longer than 5s"):
        assert part in text
    assert exc.record is record
    assert exc.error is error
    assert isinstance(exc, errors.JobwardenError)
    assert not isinstance(exc, errors.RequestError)


def test_job_failed_without_error_names_the_state() -> None:
    """A JobFailed for a record without error still says how the job ended."""
    exc = errors.JobFailed(_record(JobState.CANCELLED, None))
    assert "cancelled" in str(exc)
    assert exc.error is None


def test_subscriber_overflow_last_offset() -> None:
    """SubscriberOverflow carries the offset to resume from."""
    exc = errors.SubscriberOverflow("fell behind", last_offset=1042)
    assert exc.last_offset == 1042
    assert str(exc) == "fell behind"


def test_registration_error_is_a_type_error() -> None:
    """RegistrationError is both a JobwardenError and a TypeError."""
    assert issubclass(errors.RegistrationError, TypeError)
    assert issubclass(errors.RegistrationError, errors.JobwardenError)
    with pytest.raises(TypeError):
        raise errors.RegistrationError("bad tool")


@pytest.mark.parametrize(
    "cls",
    [
        errors.RequestError,
        errors.JobFailed,
        errors.ActorStopped,
        errors.MailboxFull,
        errors.SubscriberOverflow,
        errors.SupervisorCrashed,
        errors.RegistrationError,
        errors.IllegalTransition,
    ],
)
def test_everything_is_a_jobwarden_error(cls: type[Exception]) -> None:
    """Every exception in the drawn tree derives from JobwardenError."""
    assert issubclass(cls, errors.JobwardenError)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain ascii", "plain ascii"),
        ("café ✓ 日本", "café ✓ 日本"),
        (UNDECODABLE, "caf\\udcff"),
        ("\ud800 alone", "\\ud800 alone"),
    ],
    ids=["ascii", "unicode", "surrogateescape", "high-surrogate"],
)
def test_printable_escapes_only_lone_surrogates(text: str, shown: str) -> None:
    """printable() leaves valid text as it is and writes each lone surrogate as its escape, so
    the result always encodes as JSON."""
    assert errors.printable(text) == shown
    assert msgspec.json.decode(msgspec.json.encode(errors.printable(text))) == shown


@pytest.mark.parametrize(
    ("exc", "described"),
    [
        (ValueError("bad value"), "ValueError: bad value"),
        (KeyError("k"), "KeyError: 'k'"),
        (SystemExit(2), "SystemExit: 2"),
        (Unreadable(), "Unreadable: <its message could not be read: RuntimeError>"),
        (OSError(UNDECODABLE), "OSError: caf\\udcff"),
    ],
    ids=["plain", "key", "exit", "broken-str", "surrogate"],
)
def test_describe_never_raises_and_is_printable(exc: BaseException, described: str) -> None:
    """describe() names the exception and its text, even when reading the text raises."""
    assert errors.describe(exc) == described
