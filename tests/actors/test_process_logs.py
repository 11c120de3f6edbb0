"""The parent's side of a process tool's log lines: each is logged as the tool's own line."""

from __future__ import annotations

from structlog.testing import capture_logs

from jobwarden.actors.process_logs import Logged, relog


def test_a_line_keeps_its_level_and_fields() -> None:
    """A worker's warning is logged as a warning with its fields, on logger jobwarden.tool."""
    with capture_logs() as logs:
        relog(Logged("warning", "disk almost full", {"free_mb": 12, "logger": "user"}))
    assert logs == [
        {"event": "disk almost full", "log_level": "warning", "free_mb": 12, "logger": "user"}
    ]


def test_an_unknown_level_is_logged_as_info_and_reserved_fields_are_dropped() -> None:
    """A level the server does not log at (a custom stdlib level) becomes info; fields that
    would overwrite the line's own event, level or time are dropped."""
    entry = Logged("trace", "custom", {"event": "x", "level": "y", "timestamp": "z", "n": 1})
    with capture_logs() as logs:
        relog(entry)
    assert logs == [{"event": "custom", "log_level": "info", "n": 1}]
