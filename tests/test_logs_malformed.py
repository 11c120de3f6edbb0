"""A stdlib record that cannot be written (a malformed log call) is one line in the configured
format, never the standard library's ``--- Logging error ---`` and a raw traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from jobwarden.log_output import MALFORMED, UNWRITABLE


def _render(fmt: str) -> str:
    """What ``configure_logging(fmt)`` writes for malformed stdlib log calls between two good
    lines, bound to a request id, in a fresh interpreter (the configuration is process-wide)."""
    script = textwrap.dedent(
        f"""
        import logging, structlog
        from jobwarden.logs import configure_logging
        configure_logging({fmt!r})
        structlog.contextvars.bind_contextvars(request_id="r-1")
        class Unprintable:
            def __str__(self):
                raise RuntimeError("no str")
        plug = logging.getLogger("plug")
        plug.info("before")
        plug.info("value %d", "notanint")
        plug.warning(Unprintable())
        plug.info("two %s %s", "only one")
        plug.info("after")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout == ""
    return done.stderr


def test_a_malformed_stdlib_call_is_one_json_error_line() -> None:
    """With JSON logs, each malformed call is one JSON error line naming its logger, message
    template and error, with the bound context; the log holds nothing but JSON lines."""
    lines = [json.loads(line) for line in _render("json").splitlines()]
    assert [line["event"] for line in lines] == ["before", MALFORMED, MALFORMED, MALFORMED, "after"]
    notes = lines[1:4]
    for note in notes:
        assert (note["level"], note["logger"], note["request_id"]) == ("error", "plug", "r-1")
    assert [note["template"] for note in notes] == [
        "value %d",
        "<a Unprintable whose str() raised>",
        "two %s %s",
    ]
    assert notes[0]["error"] == "TypeError: %d format: a real number is required, not str"
    assert notes[1]["error"] == "RuntimeError: no str"
    assert notes[2]["error"] == "TypeError: not enough arguments for format string"


def test_a_malformed_stdlib_call_is_one_console_line() -> None:
    """With console logs too, a malformed call is one line naming its template, not a raw
    traceback."""
    text = _render("console")
    assert "--- Logging error ---" not in text
    assert "Traceback" not in text
    lines = text.splitlines()
    assert len(lines) == 5, text
    assert MALFORMED in lines[1]
    assert "value %d" in lines[1]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_record_whose_rendering_fails_is_reported_as_unwritable(fmt: str) -> None:
    """A record whose message formats but whose writing fails is reported as one line too."""
    script = textwrap.dedent(
        f"""
        import logging
        from jobwarden.logs import configure_logging
        configure_logging({fmt!r})
        class FailingOnce(logging.Formatter):
            def __init__(self, real):
                super().__init__()
                self.real, self.failed = real, False
            def format(self, record):
                if not self.failed:
                    self.failed = True
                    raise ValueError("renderer broke")
                return self.real.format(record)
        handler = logging.getLogger().handlers[0]
        handler.setFormatter(FailingOnce(handler.formatter))
        logging.getLogger("plug").info("fine %s", "text")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert UNWRITABLE in done.stderr
    assert "renderer broke" in done.stderr
