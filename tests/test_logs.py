"""Log context: a job's id, tool and attempt on every line logged while a runner handles it,
and only then; and the JSON and console renderings of structlog's and the stdlib's records."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from jobwarden import JobState, Supervisor, builtin
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
    assert [line["event"] for line in lines] == ["stdlib line", "structlog line", "handler failed"]
    for line in lines:
        assert (line["request_id"], line["principal"]) == ("r-1", "alice")
        assert line["timestamp"].endswith("Z")
    assert (lines[0]["level"], lines[0]["logger"]) == ("warning", "aiohttp.server")
    assert (lines[1]["level"], lines[1]["n"]) == ("info", 1)
    assert lines[2]["level"] == "error"
    assert "ValueError: boom" in lines[2]["exception"]


def test_console_lines_show_the_context_too() -> None:
    """With console logs, both kinds of line show the event and the bound context as key=value."""
    lines = _render("console").splitlines()
    stdlib = next(line for line in lines if "stdlib line" in line)
    native = next(line for line in lines if "structlog line" in line)
    for line in (stdlib, native):
        assert "request_id=r-1" in line
        assert "principal=alice" in line
    assert "below the level" not in "\n".join(lines)
