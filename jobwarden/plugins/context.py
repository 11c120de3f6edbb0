"""What a running tool sees of its job: progress reporting, identity, logging and cancellation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import structlog
from anyio.lowlevel import EventLoopToken

ProgressSink = Callable[[float, str | None], Awaitable[None]]
SyncProgressSink = Callable[[float, str | None], None]


class ToolContext:
    """Handed to every tool call as its second argument.

    ``cancel_requested`` lets code that cannot be interrupted (a sync function in a thread, a loop
    without checkpoints) notice a cancel or timeout and stop early.
    """

    __slots__ = (
        "_cancel_requested",
        "_log",
        "_progress",
        "_progress_sync",
        "_timed_out",
        "_token",
        "attempt",
        "job_id",
        "tool",
    )

    def __init__(
        self,
        *,
        job_id: str,
        tool: str,
        attempt: int,
        progress: ProgressSink,
        progress_sync: SyncProgressSink | None = None,
    ) -> None:
        self.job_id = job_id
        self.tool = tool
        self.attempt = attempt
        self._progress = progress
        self._progress_sync = progress_sync
        self._cancel_requested = False
        self._timed_out = False
        self._log: structlog.typing.FilteringBoundLogger | None = None
        self._token: EventLoopToken | None = None

    def from_threads(self, token: EventLoopToken) -> None:
        """Let ``progress_sync`` reach the event loop of ``token`` from any thread: a thread-mode
        tool's own threads (a pool it starts) are not anyio's, which alone know their loop."""
        self._token = token

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress in [0, 1]; emits a ``jobwarden.job.progress`` event.

        Raises ``ValueError`` for a fraction outside [0, 1] and ``TypeError`` or ``ValueError``
        for a message that is not a str of valid Unicode (no event could carry it).
        """
        await self._progress(_checked(fraction), _checked_message(message))

    def progress_sync(self, fraction: float, message: str | None = None) -> None:
        """``progress`` for a plain ``def`` (thread or process mode), which cannot await.

        In thread mode it returns once the event loop has taken the report; in process mode once
        it is sent to the server, which reports it before the call's answer. An ``async`` tool
        awaits ``progress`` instead: called on the event loop this raises ``RuntimeError``.
        """
        checked = _checked(fraction)
        message = _checked_message(message)
        if self._progress_sync is not None:
            self._progress_sync(checked, message)
            return
        try:
            anyio.from_thread.run(self.progress, checked, message, token=self._token)
        except anyio.NoEventLoopError as exc:  # not in one of anyio's worker threads
            raise RuntimeError(
                "progress_sync is for thread- and process-mode tools; an async tool awaits"
                " ctx.progress(...)"
            ) from exc

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        """A structlog logger bound to this job's id, tool and attempt (made on first use)."""
        if self._log is None:
            self._log = structlog.get_logger("jobwarden.tool").bind(
                job_id=self.job_id, tool=self.tool, attempt=self.attempt
            )
        return self._log

    @property
    def cancel_requested(self) -> bool:
        """True once the job was cancelled or timed out; cooperative code should return."""
        return self._cancel_requested

    @property
    def timed_out(self) -> bool:
        """True when the stop request came from the job's deadline rather than a cancel."""
        return self._timed_out

    def end(self) -> None:
        """Mark the attempt as over (by the runtime, when the job is queued again): what a thread
        it left running reports later is dropped, not taken for the next attempt's progress."""
        self._progress = _dropped

    def request_cancel(self, *, timed_out: bool = False) -> None:
        """Mark the call as stopped (by the runtime, not by plugins); the first reason wins."""
        if not self._cancel_requested:
            self._cancel_requested = True
            self._timed_out = timed_out


async def _dropped(fraction: float, message: str | None) -> None:
    """The progress sink of an attempt that is over."""


def _checked_message(message: str | None) -> str | None:
    if message is None:
        return None
    if not isinstance(message, str):
        raise TypeError(f"a progress message must be a str or None, got {type(message).__name__}")
    if not message.isascii():
        try:
            message.encode()
        except UnicodeEncodeError as exc:
            # A lone surrogate: stored, the event could never be read back or sent.
            raise ValueError(f"a progress message must be valid Unicode ({exc.reason})") from exc
    return message


def _checked(fraction: float) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ValueError(f"progress must be a number in [0, 1], got {fraction!r}")
    if not 0 <= fraction <= 1:  # also refuses NaN; compares huge ints without overflow
        raise ValueError(f"progress must be in [0, 1], got {fraction!r}")
    return float(fraction)
