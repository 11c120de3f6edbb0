"""``submit --wait``'s live view of one job on stderr: a progress bar, or plain lines off a TTY."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from jobwarden.cli.render import percent, state_text
from jobwarden.records import JobEvent


class JobProgress:
    """Shows a job's events as they arrive.

    On an interactive terminal: a bar with the state, fraction and last message, redrawn on
    every event (so each one is shown at least once), and a line above it per state change.
    Elsewhere (a pipe, a log file): one plain line per state change or progress report.
    """

    def __init__(self, console: Console, job_id: str, tool: str) -> None:
        self._console = console
        self._job_id = job_id
        self._tool = tool
        self._state: str | None = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._fraction: float | None = None
        self._message = ""

    def __enter__(self) -> JobProgress:
        if self._console.is_interactive:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[message]}", markup=False),
                console=self._console,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(self._tool, total=None, message="")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def show(self, event: JobEvent) -> None:
        """Reflect one of the job's events."""
        data = event.data
        if data.progress is not None:
            self._fraction = data.progress
        elif data.state == "succeeded":
            self._fraction = 1.0
        if data.message:
            self._message = data.message
        # The terminal state is the command's own summary line.
        if data.state != self._state and not data.state.terminal:
            self._state = data.state
            line = Text(f"job {self._job_id} ")
            line.append_text(state_text(data.state))
            if data.attempt > 1:
                line.append(f" (attempt {data.attempt})")
            self._console.print(line, soft_wrap=True)
        if self._progress is None or self._task is None:
            if data.progress is not None and event.type.endswith(".progress"):
                message = f" {data.message}" if data.message else ""
                self._console.print(
                    f"job {self._job_id} {percent(data.progress)}{message}",
                    soft_wrap=True,
                    markup=False,
                )
            return
        self._progress.update(
            self._task,
            total=None if self._fraction is None else 1.0,
            completed=self._fraction or 0.0,
            description=f"{self._tool} {data.state}",
            message=self._message,
            refresh=True,
        )
