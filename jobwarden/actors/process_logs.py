"""Logs of process-mode tools: what a tool logs in its worker (``ctx.log``, structlog, or the
standard library's logging) is logged by the server, with the job's context.

A worker's stdout and stderr go to ``/dev/null`` (a tool's prints must not corrupt the server's
logs or a CLI's JSON), so its log lines had nowhere to go. In the worker, structlog's last
processor and a handler on the root logger turn each entry into a ``Logged`` message sent on the
call's connection, ahead of the call's reply; the parent (``process_pool``) logs each one as it
arrives, on logger ``jobwarden.tool``, in the task that runs the call, so the job's bound context
(job id, tool, attempt, principal) is on it as on a thread or async tool's lines.

Logging never fails the tool: a lone surrogate (a file name decoded with surrogateescape) is sent
escaped, as the server's own JSON lines write it, a value MessagePack cannot carry (an int past
64 bits, any object) as its ``repr``, and a stdlib record whose message cannot be formatted as a
line saying so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

import msgspec
import structlog
from structlog.contextvars import get_contextvars, merge_contextvars
from structlog.processors import add_log_level, format_exc_info

from jobwarden.errors import describe, printable
from jobwarden.log_output import failure_note

LEVEL = logging.INFO  # what a worker sends: its debug lines would cost a message each
_RESERVED = frozenset({"event", "level", "log_level", "timestamp"})
# Exact types: MessagePack's encoder refuses subclasses of them (an IntEnum, a str subclass).
_PLAIN = frozenset({float, bool, type(None)})
_INT_RANGE = range(-(2**63), 2**64)  # what MessagePack's integers hold
_encoder = msgspec.msgpack.Encoder()
# A worker has one connection, and a tool's threads log and report progress on it concurrently:
# send_bytes writes a large message's header and payload separately (and a payload past the
# pipe's buffer in pieces), so two unserialised sends interleave and the parent reads garbage.
_sending = threading.Lock()


class Logged(msgspec.Struct, tag="logged", tag_field="kind"):
    """One log entry of a tool in a worker: its level, message and other fields."""

    level: str
    event: str
    fields: dict[str, Any]


def send(conn: Connection, data: bytes) -> None:
    """In a worker: send one message on ``conn``, whole, whatever other thread sends too.

    Every send of a worker's (log lines, progress, the reply) goes through here.
    """
    with _sending:
        conn.send_bytes(data)


def forward(conn: Connection) -> None:
    """In a worker: send every log entry at ``LEVEL`` or above to the parent over ``conn``."""

    def emit(_logger: Any, _method: str, event_dict: structlog.typing.EventDict) -> Any:
        level = _text(event_dict.pop("level", "info"))
        event = _text(event_dict.pop("event", ""))
        send(conn, _encoder.encode(Logged(level, event, _fields(event_dict))))
        raise structlog.DropEvent

    structlog.configure(
        processors=[merge_contextvars, add_log_level, format_exc_info, emit],
        wrapper_class=structlog.make_filtering_bound_logger(LEVEL),
        cache_logger_on_first_use=True,
    )

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                send(conn, _encoder.encode(_record_entry(record)))
            except Exception:
                # Only a connection gone bad is left to fail here; logging's own way out (a
                # note on stderr, /dev/null in a worker) lets the tool go on.
                self.handleError(record)

    root = logging.getLogger()
    root.handlers = [Handler()]
    root.setLevel(LEVEL)


def relog(entry: Logged) -> None:
    """In the parent: log what a worker sent, as a line of the tool's."""
    log = structlog.get_logger("jobwarden.tool")
    method = getattr(log, entry.level, None)
    if entry.level not in ("debug", "info", "warning", "error", "critical") or method is None:
        method = log.info
    method(entry.event, **{k: v for k, v in entry.fields.items() if k not in _RESERVED})


def _record_entry(record: logging.LogRecord) -> Logged:
    """A stdlib record as the entry sent to the parent; an error-level line naming the message
    template and the error when the record's message cannot be formatted."""
    fields = {**get_contextvars(), "logger": record.name}
    if record.exc_info:
        fields["exception"] = logging.Formatter().formatException(record.exc_info)
    level = record.levelname.lower()
    try:
        event = record.getMessage()
    except Exception as exc:
        level = "error"
        event, note = failure_note(record, exc)
        fields.update(note)
    return Logged(_text(level), _text(event), _fields(fields))


def _fields(event_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's fields, each one MessagePack can carry (others as their ``repr``)."""
    return {_text(key): _value(value) for key, value in event_dict.items()}


def _value(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return printable(value)
    if kind in _PLAIN or (kind is int and value in _INT_RANGE):
        return value
    return _text(value, repr)


def _text(value: Any, convert: Callable[[Any], str] = str) -> str:
    """``convert(value)`` made printable, as an exact ``str`` (the encoder refuses a subclass);
    a note instead if converting it raises."""
    try:
        text = convert(value)
    except Exception as exc:
        text = f"<a {type(value).__name__} that could not be shown: {describe(exc)}>"
    return printable(str.__str__(text))
