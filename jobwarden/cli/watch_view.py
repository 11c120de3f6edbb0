"""``watch``'s view on stdout: a live table of jobs on a terminal, else one line per event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from jobwarden.cli.render import percent, seconds, state_text
from jobwarden.records import JobEvent

MIN_ROWS = 5


@dataclass
class JobRow:
    """What the table shows of one job, from the events seen so far."""

    job_id: str
    tool: str
    state: str
    seen_at: datetime
    progress: float | None = None
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def apply(self, event: JobEvent) -> None:
        """Take in one more of this job's events."""
        data = event.data
        self.state = data.state
        if data.progress is not None:
            self.progress = data.progress
        if data.message:
            self.message = data.message
        if data.error is not None:
            self.message = f"{data.error.type}: {data.error.message}"
        if data.state == "running" and self.started_at is None:
            self.started_at = event.time
        if data.state.terminal:
            self.finished_at = event.time


class JobTable:
    """One row per job, in the order the jobs were first seen."""

    def __init__(self) -> None:
        self.rows: dict[str, JobRow] = {}

    def apply(self, event: JobEvent) -> JobRow:
        """Update (or add) the event's job row and return it."""
        data = event.data
        row = self.rows.get(data.job_id)
        if row is None:
            row = JobRow(data.job_id, data.tool, data.state, event.time)
            self.rows[data.job_id] = row
        row.apply(event)
        return row

    def render(self, max_rows: int | None = None) -> Table:
        """The table, keeping only the ``max_rows`` most recently seen jobs."""
        table = Table(box=None, header_style="bold")
        table.add_column("ID", no_wrap=True, min_width=32)
        table.add_column("TOOL", no_wrap=True)
        table.add_column("STATE", no_wrap=True, min_width=9)
        table.add_column("PROGRESS", justify="right", no_wrap=True)
        table.add_column("DURATION", justify="right", no_wrap=True)
        table.add_column("MESSAGE")
        rows = list(self.rows.values())
        for row in rows[-max_rows:] if max_rows else rows:
            table.add_row(
                row.job_id,
                row.tool,
                state_text(row.state),
                percent(row.progress),
                seconds(row.started_at or row.seen_at, row.finished_at),
                Text(row.message),
            )
        return table


class WatchView:
    """Shows each event as it arrives: the live table when stdout is interactive, else a line.

    ``live=False`` (for ``--json``) never draws the table, whatever the terminal.
    """

    def __init__(self, console: Console, *, live: bool = True) -> None:
        self._console = console
        self._wanted = live
        self.table = JobTable()
        self._live: Live | None = None

    def __enter__(self) -> WatchView:
        if self._wanted and self._console.is_interactive:
            self._live = Live(
                get_renderable=self._render,
                console=self._console,
                refresh_per_second=2,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()

    def _render(self) -> Table:
        return self.table.render(max(self._console.height - 2, MIN_ROWS))

    def show(self, event: JobEvent) -> None:
        """Reflect one event: redraw the table, or print the event's line."""
        row = self.table.apply(event)
        if self._live is not None:
            self._live.refresh()
            return
        line = Text(f"{event.time:%H:%M:%S}  {row.job_id}  {row.tool}  ")
        line.append_text(state_text(event.data.state))
        for extra in (percent(event.data.progress), event.data.message or ""):
            if extra:
                line.append(f"  {extra}")
        if event.data.error is not None:
            line.append(f"  {event.data.error.type}: {event.data.error.message}")
        self._console.print(line, soft_wrap=True)
