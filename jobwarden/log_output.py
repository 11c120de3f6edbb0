"""Where JSON log lines go: one write to stderr per event-loop turn, not one per line.

The access log adds a line to every request, and a ``write`` system call per line cost the
server several microseconds a request, more than rendering the line. Lines logged on a running
asyncio loop are therefore gathered and written together when the loop's current turn is over
(a callback queued with ``call_soon`` behind the work of the turn), so they reach stderr within
the same turn's time, in the order they were logged. A line logged anywhere else (another
thread, a trio program, no loop at all) is written at once, after anything still gathered, and
so are stdlib records (``flush`` first). What a process killed outright loses is the last turn's
lines at most; a process that exits normally writes them (``atexit``).

A stdlib record that cannot be written (a log call whose arguments do not fit its message, a
processor that raises) is not the standard library's ``--- Logging error ---`` and a raw
traceback, which would break a JSON log: it becomes one error line in the configured format
saying so, with the record's message template and the error (``LineHandler``).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import threading
from typing import BinaryIO, TextIO

from jobwarden.errors import describe

MAX_PENDING = 256
"""Lines gathered before they are written even though the turn is not over."""


class TurnBufferedOutput:
    """Writes lines to ``stream``, those of one event-loop turn together."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        atexit.register(self._flush_at_exit)

    def write_line(self, line: bytes) -> None:
        """Add ``line`` (with its newline); written at the end of this loop turn, or now."""
        loop = self._running_loop()
        lock = self._lock
        # acquire and release in a try rather than ``with``: half the work, on every line.
        lock.acquire()
        try:
            pending = self._pending
            pending.append(line)
            if loop is None or len(pending) >= MAX_PENDING:
                self._write_pending()
            elif len(pending) == 1:
                try:
                    loop.call_soon(self.flush)
                except RuntimeError:  # the loop is closing: no later turn will come
                    self._write_pending()
        finally:
            lock.release()

    def _running_loop(self) -> asyncio.AbstractEventLoop | None:
        # The loop last seen is remembered with its thread: while it runs there, it is that
        # thread's running loop, and asking asyncio would cost a getpid() call on 3.11.
        thread = threading.get_ident()
        loop = self._loop
        if loop is not None and self._loop_thread == thread and loop.is_running():
            return loop
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        self._loop, self._loop_thread = loop, thread
        return loop

    def flush(self) -> None:
        """Write what is gathered now."""
        with self._lock:
            self._write_pending()

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except (OSError, ValueError):
            return  # the stream is already closed: there is nowhere left to write them

    def _write_pending(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._stream.write(data)
        self._stream.flush()


class LineLogger:
    """A structlog logger (a method per level, each taking the rendered line) writing through a
    ``TurnBufferedOutput``."""

    __slots__ = ("_output",)

    def __init__(self, output: TurnBufferedOutput) -> None:
        self._output = output

    def msg(self, message: bytes) -> None:
        """Write one rendered line."""
        self._output.write_line(message + b"\n")

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


MALFORMED = "a log call was malformed: its message could not be formatted"
UNWRITABLE = "a log record could not be written"
NOTE_FIELDS = ("template", "error")
"""The attributes of the line about a record that failed, copied into it as fields."""


class LineHandler(logging.StreamHandler[TextIO]):
    """A stream handler that reports a record it cannot write as one line of its own format."""

    def handleError(self, record: logging.LogRecord) -> None:
        """Write an error line naming ``record``'s message template and what went wrong."""
        note = _failure_note(record, sys.exc_info()[1])
        try:
            self.stream.write(self.format(note) + self.terminator)
            self.flush()
        except Exception:
            return  # the line about the failure fails too (stderr closed): nowhere is left


def failure_note(
    record: logging.LogRecord, error: BaseException | None
) -> tuple[str, dict[str, str]]:
    """The event of the error line about ``record``, which failed with ``error``, and its fields
    (``NOTE_FIELDS``): the record's message template and the error."""
    try:
        record.getMessage()
        event = UNWRITABLE
    except Exception:
        event = MALFORMED
    try:
        template = str(record.msg)
    except Exception:
        template = f"<a {type(record.msg).__name__} whose str() raised>"
    return event, {"template": template, "error": "unknown" if error is None else describe(error)}


def _failure_note(record: logging.LogRecord, error: BaseException | None) -> logging.LogRecord:
    """The error record about ``record``, which failed with ``error``."""
    event, fields = failure_note(record, error)
    return logging.makeLogRecord(
        {
            "name": record.name,
            "levelno": logging.ERROR,
            "levelname": logging.getLevelName(logging.ERROR),
            "pathname": record.pathname,
            "lineno": record.lineno,
            "msg": event,
            **fields,
        }
    )


class FlushingHandler(LineHandler):
    """The stdlib's records: written at once, after the lines gathered before them."""

    def __init__(self, output: TurnBufferedOutput, stream: TextIO) -> None:
        super().__init__(stream)
        self._output = output

    def emit(self, record: logging.LogRecord) -> None:
        self._output.flush()
        super().emit(record)
