"""What the client commands print: data on stdout, messages on stderr, JSON lines and tables.

Both consoles follow rich's own detection: colour and live displays only on a terminal, none
with NO_COLOR; TTY_COMPATIBLE / TTY_INTERACTIVE / COLUMNS force them (that is how tests do it).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

STATE_STYLES = {
    "queued": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "timed_out": "magenta",
    "cancelled": "bright_black",
}


def data_console() -> Console:
    """stdout: results and listings only, so they pipe cleanly."""
    return Console(highlight=False)


def message_console() -> Console:
    """stderr: progress and messages for the person at the terminal."""
    return Console(stderr=True, highlight=False)


def print_json_line(value: Any) -> None:
    """``value`` as one line of JSON on stdout."""
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")
    sys.stdout.flush()


def print_data(console: Console, value: Any, as_json: bool) -> None:
    """A result or document: one JSON line with ``--json``, else indented (coloured on a TTY)."""
    if as_json:
        print_json_line(value)
    else:
        console.print_json(msgspec.json.encode(value).decode())


def state_text(state: str) -> Text:
    """A job state in its colour."""
    return Text(state, style=STATE_STYLES.get(state, ""))


def percent(progress: float | None) -> str:
    """``0.5`` as ``50%``; nothing when a tool never reported progress."""
    return "" if progress is None else f"{progress:.0%}"


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the server, or None."""
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def seconds(start: datetime | None, end: datetime | None) -> str:
    """How long from ``start`` to ``end`` (or now), as ``1.2s``; nothing before it started."""
    if start is None:
        return ""
    elapsed = ((end or datetime.now(UTC)) - start).total_seconds()
    return f"{max(elapsed, 0.0):.1f}s"


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    """GET /v1/jobs as a table, newest first as the server sent it."""
    table = Table(box=None, header_style="bold")
    # Ids and states are what people act on: the other columns give way on a narrow terminal.
    table.add_column("ID", no_wrap=True, min_width=32)
    table.add_column("TOOL", no_wrap=True)
    table.add_column("STATE", no_wrap=True, min_width=9)
    table.add_column("PROGRESS", justify="right", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    table.add_column("DURATION", justify="right", no_wrap=True)
    table.add_column("ERROR", min_width=10)
    for job in jobs:
        error = job.get("error") or {}
        table.add_row(
            job["id"],
            job["tool"],
            state_text(job["state"]),
            percent(job.get("progress")),
            job["created_at"][5:19].replace("T", " "),
            seconds(parse_time(job.get("started_at")), parse_time(job.get("finished_at"))),
            Text(f"{error['type']}: {error['message']}" if error else ""),
        )
    return table
