"""Log context: a job's id, tool and attempt on every line logged while a runner handles it,
and only then; and the JSON and console renderings of structlog's and the stdlib's records."""

from __future__ import annotations

import contextvars
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import structlog
from structlog.testing import capture_logs

from jobwarden import JobState, Supervisor, builtin, logs
from tests.fakes import FlakyStore
from tests.log_plugin import chatty

MERGE = [structlog.contextvars.merge_contextvars]


def _job_lines(logs: list[Any], event: str) -> list[dict[str, Any]]:
    return [dict(entry) for entry in logs if entry["event"] == event]


@pytest.mark.anyio
async def test_a_tool_s_lines_carry_its_own_job() -> None:
    """Lines a tool logs (structlog, ctx.log, in a thread) carry that job's id, tool and attempt,
    and the next job on the same runner carries its own."""
    with capture_logs(processors=MERGE) as logs:
        async with Supervisor(plugins=[chatty], concurrency=1) as sup:
            first = await sup.submit("chatty.say", {"text": "one"})
            second = await sup.submit("chatty.say_in_thread", {"text": "two"})
            for rec in (first, second):
                assert (await sup.wait(rec.id, timeout=10)).state is JobState.SUCCEEDED
    expected_first = {"job_id": first.id, "tool": "chatty.say", "attempt": 1}
    expected_second = {"job_id": second.id, "tool": "chatty.say_in_thread", "attempt": 1}
    for event, expected in (
        ("structlog line", expected_first),
        ("ctx line", expected_first),
        ("thread line", expected_second),
    ):
        [line] = _job_lines(logs, event)
        assert {key: line[key] for key in expected} == expected, line


@pytest.mark.anyio
async def test_the_runner_s_own_lines_outside_a_job_carry_no_job() -> None:
    """Once a runner let go of a job its task's context holds no job: the crash line it logs
    afterwards names no job, though the job it crashed on was bound a moment before."""
    store = FlakyStore(fail_state="running", times=1)
    with capture_logs(processors=MERGE) as logs:
        async with Supervisor(plugins=[builtin], store=store, concurrency=1) as sup:
            rec = await sup.submit("builtin.echo", {"text": "x"})
            assert (await sup.wait(rec.id, timeout=10)).state is JobState.SUCCEEDED
    [crash] = _job_lines(logs, "tool runner crashed; restarting it")
    assert not {"job_id", "tool", "attempt"} & set(crash), crash


@pytest.mark.anyio
async def test_a_failing_tool_s_warning_carries_its_attempt() -> None:
    """The runner's own "tool raised" line gets the attempt from the context, not its caller."""
    with capture_logs(processors=MERGE) as logs:
        async with Supervisor(plugins=[builtin]) as sup:
            rec = await sup.submit("builtin.fail", {})
            await sup.wait(rec.id, timeout=10)
    [line] = _job_lines(logs, "tool raised")
    assert (line["job_id"], line["tool"], line["attempt"]) == (rec.id, "builtin.fail", 1)


def _render(fmt: str) -> str:
    """What ``configure_logging(fmt)`` makes of a structlog line and stdlib records, bound to a
    request id and principal, in a fresh interpreter (the configuration is process-wide)."""
    script = textwrap.dedent(
        f"""
        import logging, structlog
        from jobwarden.logs import configure_logging
        configure_logging({fmt!r})
        structlog.contextvars.bind_contextvars(request_id="r-1", principal="alice")
        logging.getLogger("aiohttp.server").warning("stdlib %s", "line")
        structlog.get_logger("jobwarden.test").info("structlog line", n=1)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("aiohttp.server").exception("handler failed")
        logging.getLogger("aiohttp.access").debug("below the level")
        def tool():
            kept = "LOCAL-" + "VALUE"
            nested = 1
            for _ in range(100):
                nested = [nested]
            raise RuntimeError("plugin boom")
        try:
            tool()
        except RuntimeError as exc:
            structlog.get_logger("jobwarden.tool_runner").warning("tool raised", exc_info=exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == ""
    return done.stderr


def test_json_lines_from_structlog_and_the_stdlib_share_the_context() -> None:
    """With JSON logs, a stdlib record (aiohttp's logger) and a structlog line are each one JSON
    object with level, timestamp and the bound context; an exception's traceback is a field."""
    lines = [json.loads(line) for line in _render("json").splitlines()]
    assert [line["event"] for line in lines] == [
        "stdlib line",
        "structlog line",
        "handler failed",
        "tool raised",
    ]
    for line in lines:
        assert (line["request_id"], line["principal"]) == ("r-1", "alice")
        assert line["timestamp"].endswith("Z")
    assert (lines[0]["level"], lines[0]["logger"]) == ("warning", "aiohttp.server")
    assert (lines[1]["level"], lines[1]["n"]) == ("info", 1)
    assert lines[2]["level"] == "error"
    assert "ValueError: boom" in lines[2]["exception"]
    assert "RuntimeError: plugin boom" in lines[3]["exception"]
    assert "LOCAL-VALUE" not in lines[3]["exception"]


def test_console_lines_show_the_context_too() -> None:
    """With console logs, both kinds of line show the event and the bound context as key=value."""
    lines = _render("console").splitlines()
    stdlib = next(line for line in lines if "stdlib line" in line)
    native = next(line for line in lines if "structlog line" in line)
    for line in (stdlib, native):
        assert "request_id=r-1" in line
        assert "principal=alice" in line
    assert "below the level" not in "\n".join(lines)


def test_console_tracebacks_are_plain_and_leave_locals_out() -> None:
    """A console line's traceback is the standard one, without each frame's local variables:
    rendering those (structlog's rich default) cost the event loop about 60 ms per plugin error,
    seconds for a deeply nested one, and put plugins' data into the log."""
    text = _render("console")
    assert ", in tool\n" in text  # the plugin's frame
    assert "RuntimeError: plugin boom" in text
    assert "ValueError: boom" in text
    assert "LOCAL-VALUE" not in text
    assert "Traceback (most recent call last):" in text


def test_the_context_merge_matches_structlog_s() -> None:
    """jobwarden's merge adds what structlog's adds: bound structlog variables only (not unbound
    ones, not other context variables), without overriding the line's own keys."""
    other: contextvars.ContextVar[str] = contextvars.ContextVar("structless")

    def merged() -> tuple[MutableMapping[str, Any], MutableMapping[str, Any]]:
        structlog.contextvars.bind_contextvars(request_id="r-9", principal="bob", job_id="j")
        structlog.contextvars.unbind_contextvars("job_id")
        other.set("not a log key")
        line = {"event": "x", "principal": "explicit"}
        ours = logs.merge_contextvars(None, "info", dict(line))
        theirs = structlog.contextvars.merge_contextvars(None, "info", dict(line))
        return ours, theirs

    ours, theirs = contextvars.copy_context().run(merged)
    assert ours == theirs == {"event": "x", "principal": "explicit", "request_id": "r-9"}


def test_the_context_merge_forgets_variables_past_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past the bound on remembered variables the memory starts over, and lines stay complete."""
    monkeypatch.setattr(logs, "_MAX_NAMES", 1)
    monkeypatch.setattr(logs, "_merged_names", {})

    def merged() -> MutableMapping[str, Any]:
        structlog.contextvars.bind_contextvars(request_id="r-1", principal="alice")
        logs.merge_contextvars(None, "info", {})
        return logs.merge_contextvars(None, "info", {})

    line = contextvars.copy_context().run(merged)
    assert (line["request_id"], line["principal"]) == ("r-1", "alice")
    assert len(logs._merged_names) <= 1


def test_timestamps_are_iso_utc_with_microseconds() -> None:
    """The stamper writes YYYY-MM-DDTHH:MM:SS.ffffffZ in UTC, the time of the call."""
    stamp = logs.utc_time_stamper()
    before = datetime.now(UTC)
    first = stamp(None, "info", {})["timestamp"]
    second = stamp(None, "info", {})["timestamp"]
    after = datetime.now(UTC)
    for text in (first, second):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert before - timedelta(milliseconds=1) <= at <= after + timedelta(milliseconds=1)
    assert first <= second


def test_lines_without_exc_info_pass_the_exception_formatter_unchanged() -> None:
    """format_exc_info leaves a line without exc_info as it is and formats one that has it."""
    line = {"event": "x", "n": 1}
    assert logs.format_exc_info(None, "info", dict(line)) == line
    try:
        raise ValueError("boom")
    except ValueError as exc:
        formatted = logs.format_exc_info(None, "error", {"event": "y", "exc_info": exc})
    assert "exc_info" not in formatted
    assert "ValueError: boom" in formatted["exception"]


class _Recorder:
    """A structlog logger that keeps what each call received."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def info(self, *args: Any, **kw: Any) -> None:
        self.calls.append((args, kw))


def _both_loggers(processors: list[Any]) -> tuple[list[Any], list[Any]]:
    """What jobwarden's info and structlog's hand to the logger, for the same calls."""
    received = []
    for wrapper in (logs.bound_logger_class(20), structlog.make_filtering_bound_logger(20)):
        recorder = _Recorder()
        log = structlog.wrap_logger(recorder, processors=processors, wrapper_class=wrapper)
        log = log.bind(bound=1, n=0)
        log.info("plain", n=2, method="POST")
        log.info("interpolated %s of %d", "one", 2, k="v")
        structlog.wrap_logger(recorder, processors=processors, wrapper_class=wrapper).info("bare")
        received.append(recorder.calls)
    return received[0], received[1]


@pytest.mark.parametrize(
    "last",
    [
        pytest.param(lambda _, __, event: json.dumps(event), id="str"),
        pytest.param(lambda _, __, event: json.dumps(event).encode(), id="bytes"),
        pytest.param(lambda _, __, event: ((json.dumps(event),), {"extra": 1}), id="tuple"),
        pytest.param(lambda _, __, event: event, id="dict"),
    ],
)
def test_the_quick_info_hands_the_logger_what_structlog_s_does(last: Any) -> None:
    """Whatever the last processor returns, jobwarden's info passes the logger the same call as
    structlog's: fields over the bound context, ``event`` last, %-interpolation applied."""
    ours, theirs = _both_loggers([logs.add_log_level, last])
    assert ours == theirs
    assert len(ours) == 3


def test_the_quick_info_logs_nothing_for_a_dropped_event() -> None:
    """A processor raising DropEvent ends the line, as with structlog's info."""

    def drop(_: Any, __: str, event: Any) -> Any:
        raise structlog.DropEvent

    ours, theirs = _both_loggers([drop])
    assert ours == theirs == []


def test_the_quick_info_refuses_what_structlog_s_refuses() -> None:
    """A last processor returning something no logger takes is a ValueError, as with structlog's."""

    def unusable(_: Any, __: str, event: Any) -> Any:
        return 42

    for wrapper in (logs.bound_logger_class(20), structlog.make_filtering_bound_logger(20)):
        log = structlog.wrap_logger(_Recorder(), processors=[unusable], wrapper_class=wrapper)
        with pytest.raises(ValueError, match="Last processor didn't return"):
            log.info("x")


def test_above_info_the_logger_class_is_structlog_s() -> None:
    """Above INFO there is no quick info: it is structlog's class, whose info does nothing."""
    wrapper = logs.bound_logger_class(30)
    assert wrapper is structlog.make_filtering_bound_logger(30)
    recorder = _Recorder()
    structlog.wrap_logger(recorder, processors=[], wrapper_class=wrapper).info("x")
    assert recorder.calls == []


@pytest.mark.parametrize("method", ["debug", "info", "warn", "warning", "error", "exception"])
def test_the_level_is_structlog_s(method: str) -> None:
    """add_log_level names each method's level as structlog's add_log_level does."""
    theirs = structlog.processors.add_log_level(None, method, {})
    assert logs.add_log_level(None, method, {}) == theirs


def test_json_lines_escape_lone_surrogates_instead_of_failing() -> None:
    """A str holding a lone surrogate (bytes that were not UTF-8, decoded with surrogateescape)
    anywhere in a line, a key included, renders as JSON with the surrogate escaped; a line
    without one renders exactly as before."""
    odd = b"\xff\xfe".decode("utf-8", "surrogateescape")
    when = datetime(2026, 1, 1, tzinfo=UTC)
    line = {
        "event": "request",
        "request_id": odd,
        odd: 1,
        "nested": {"list": [odd, 2], "tuple": (odd,)},
        "at": when,
        "other": object(),
    }
    rendered = logs.render_json(None, "info", dict(line))
    stdlib = logs._json_text(dict(line))
    for text in (rendered.decode(), stdlib):
        decoded = json.loads(text)
        assert decoded["request_id"] == "\\udcff\\udcfe"
        assert decoded["\\udcff\\udcfe"] == 1
        assert decoded["nested"] == {"list": ["\\udcff\\udcfe", 2], "tuple": ["\\udcff\\udcfe"]}
        assert decoded["at"] == "2026-01-01T00:00:00Z"
        assert decoded["other"].startswith("<object object at ")
    plain = {"event": "request", "n": 1, "at": when}
    assert logs.render_json(None, "info", dict(plain)) == msgspec.json.encode(plain)


class _NoRepr:
    """A value whose ``repr`` raises."""

    def __repr__(self) -> str:
        raise ValueError("no repr")


def test_json_lines_write_a_field_that_will_not_encode_as_its_repr() -> None:
    """A field holding itself, or one whose repr raises, beside a lone surrogate, does not fail
    the line: that field is its repr (or its type), the others render as they are."""
    looped: list[Any] = []
    looped.append(looped)
    odd = b"\xff".decode("utf-8", "surrogateescape")
    line = {"event": "e", "looped": looped, "bad": _NoRepr(), "odd": odd, "n": 1}
    for text in (logs.render_json(None, "info", dict(line)).decode(), logs._json_text(line)):
        decoded = json.loads(text)
        assert decoded == {
            "event": "e",
            "looped": "[[...]]",
            "bad": "<a _NoRepr with no repr>",
            "odd": "\\udcff",
            "n": 1,
        }
