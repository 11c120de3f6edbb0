"""Logging set up once: structlog for our loggers and the stdlib's, JSON or console.

jobwarden's own loggers render straight to stderr through structlog's native loggers (no stdlib
LogRecord per line: the access log is on every request's path; as JSON, the lines of one event-loop
turn are written together, see ``log_output``); records from the stdlib's loggers
(aiohttp, asyncio) go through the same processors by way of a ProcessorFormatter.

Context travels in structlog's context variables, so every line carries it, whoever logs it (our
loggers, a plugin's ``structlog.get_logger()``, a stdlib logger): ``request_id`` and
``principal`` while a request is handled, ``job_id``, ``tool`` and ``attempt`` while a runner
handles a job (``bind_job``, then ``unbind_job`` when the runner stops). A request's bindings
are made in the task aiohttp runs that one request in, with a copy of its connection's context:
they end with that task, and are never unbound one by one.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog
from structlog.typing import EventDict

from jobwarden.errors import printable
from jobwarden.log_output import (
    NOTE_FIELDS,
    FlushingHandler,
    LineHandler,
    LineLogger,
    TurnBufferedOutput,
)
from jobwarden.records import JobRecord

_encoder = msgspec.json.Encoder(enc_hook=repr)


def _context_var(key: str) -> ContextVar[Any]:
    """The variable behind ``structlog.contextvars.bind_contextvars(key=...)``, so that a runner
    can set it directly: three ``set`` calls per job, about a third of a bind and a reset."""
    token = structlog.contextvars.bind_contextvars(**{key: None})[key]
    token.var.reset(token)
    return token.var


_JOB_ID = _context_var("job_id")
_TOOL = _context_var("tool")
_ATTEMPT = _context_var("attempt")
_REQUEST_ID = _context_var("request_id")
_PRINCIPAL = _context_var("principal")
_UNBOUND = ...  # what structlog's merge_contextvars skips
_PREFIX = "structlog_"  # structlog's names for its context variables begin with it


def bind_request(request_id: str) -> None:
    """Bind a request's id to the log context of the request's own task (see the module's
    docstring: the binding ends with the task)."""
    _REQUEST_ID.set(request_id)


def bind_principal(name: str) -> None:
    """Bind the caller's name (``principal``) to the request's log context."""
    _PRINCIPAL.set(name)


def bound_principal() -> str | None:
    """The caller's name bound to this request's log context; None until it is known."""
    name: str | None = _PRINCIPAL.get(None)
    return name


def bind_request_job(record: JobRecord) -> None:
    """Bind the id and tool of the job a request touched to the request's log context."""
    _JOB_ID.set(record.id)
    _TOOL.set(record.tool)


def bind_job(record: JobRecord) -> None:
    """Bind the job's id, tool and attempt to the log context, replacing the last job's.

    For a runner's task, which handles job after job and logs nothing between two of them: it
    binds each job as it takes it (so no line of a job carries another's ids) and unbinds once,
    when it stops (``unbind_job``), rather than paying a reset per job.
    """
    _JOB_ID.set(record.id)
    # Each set copies the context's mapping (two gc-tracked objects): a runner that takes job
    # after job of one tool keeps its tool and attempt bound as they are.
    if _TOOL.get() != record.tool:
        _TOOL.set(record.tool)
    if _ATTEMPT.get() != record.attempt:
        _ATTEMPT.set(record.attempt)


def unbind_job() -> None:
    """Take the job's id, tool and attempt out of the log context."""
    _JOB_ID.set(_UNBOUND)
    _TOOL.set(_UNBOUND)
    _ATTEMPT.set(_UNBOUND)


def configure_logging(fmt: str = "console", level: int = logging.INFO) -> None:
    """Configure structlog and the stdlib's root logger to render JSON or console lines."""
    shared: list[structlog.typing.Processor] = [
        merge_contextvars,
        add_log_level,
        utc_time_stamper(),
    ]
    foreign: structlog.typing.Processor
    handler: LineHandler
    if fmt == "json":
        output = TurnBufferedOutput(sys.stderr.buffer)
        handler = FlushingHandler(output, sys.stderr)
        structlog.configure(
            processors=[
                *shared,
                format_exc_info,
                render_json,
            ],
            logger_factory=lambda *_: LineLogger(output),
            wrapper_class=bound_logger_class(level),
            cache_logger_on_first_use=True,
        )
        foreign = structlog.processors.JSONRenderer(serializer=_json_text)
    else:
        # Plain tracebacks: structlog's default (rich, with each frame's locals) took about 60 ms
        # of the event loop per logged plugin error, seconds for a deeply nested local, and
        # wrote plugins' locals (inputs, secrets) into the log.
        console = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
        structlog.configure(
            processors=[*shared, console],
            logger_factory=structlog.PrintLoggerFactory(sys.stderr),
            wrapper_class=bound_logger_class(level),
            cache_logger_on_first_use=True,
        )
        foreign = console
        handler = LineHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                # The fields of the line a handler writes about a record it could not write.
                structlog.stdlib.ExtraAdder(allow=NOTE_FIELDS),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *([structlog.processors.format_exc_info] if fmt == "json" else []),
                foreign,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


_LINE_TYPES = (str, bytes, bytearray)  # a constant: ``str | bytes | bytearray`` is built per use


def bound_logger_class(level: int) -> type[structlog.typing.FilteringBoundLogger]:
    """structlog's filtering bound logger for ``level``, with a quicker ``info``.

    ``info`` is the access log's level: a line on every request. structlog's own goes through
    three calls (level method, ``_proxy_to_logger``, ``_process_event``) and packs the fields
    into a new dict at each; this one builds the event dict once and runs the same processors
    with the same outcome (the fields over the bound context, ``event`` last; a dropped event
    logs nothing; the last processor's str, bytes, tuple or dict handed to the logger as
    structlog would).
    """
    base = structlog.make_filtering_bound_logger(level)
    if level > logging.INFO:
        return base  # its info does nothing at all

    def info(self: Any, event: str, *args: Any, **kw: Any) -> Any:
        if args:  # %-interpolation: structlog's own path
            return base.info(self, event, *args, **kw)
        kw["event"] = event
        context = self._context
        event_dict: Any = {**context, **kw} if context else kw
        logger = self._logger
        try:
            for processor in self._processors:
                event_dict = processor(logger, "info", event_dict)
        except structlog.DropEvent:
            return None
        if isinstance(event_dict, _LINE_TYPES):
            return logger.info(event_dict)
        if isinstance(event_dict, tuple):
            return logger.info(*event_dict[0], **event_dict[1])
        if isinstance(event_dict, dict):
            return logger.info(**event_dict)
        raise ValueError(
            "Last processor didn't return an appropriate value.  "
            "Valid return values are a dict, a tuple of (args, kwargs), bytes, or a str."
        )

    return type(base.__name__, (base,), {"info": info, "__slots__": ()})


def _json_text(event: Any, **_: Any) -> str:
    return _json(event).decode()


def _json(value: Any) -> bytes:
    """``value`` as JSON; a str holding a lone surrogate (a header, path or file name that was
    not UTF-8) is written with the surrogate escaped (``\\udcff``) instead of failing the line,
    and a field that will not encode at all (a list holding itself, an object whose ``repr``
    raises) is written as its ``repr``, or named by its type: a log call never fails its
    caller, which may be a tool."""
    try:
        return _encoder.encode(value)
    except UnicodeEncodeError:
        pass
    except Exception:  # RecursionError, or whatever a value's repr raised in the enc_hook
        return _encoder.encode(_field_by_field(value))
    try:
        return _encoder.encode(_printable(value))
    except Exception:
        return _encoder.encode(_field_by_field(value))


def _field_by_field(value: Any) -> Any:
    """The line's fields each as it encodes, else as its printable ``repr``, else its type."""
    if not isinstance(value, dict):
        return _encodable(value)
    return {printable(str(key)): _encodable(item) for key, item in value.items()}


def _encodable(value: Any) -> Any:
    try:
        _encoder.encode(value)
        return value
    except UnicodeEncodeError:
        with contextlib.suppress(Exception):
            shown = _printable(value)
            _encoder.encode(shown)
            return shown
    except Exception:
        pass
    try:
        return printable(repr(value))
    except Exception:
        return f"<a {printable(type(value).__name__)} with no repr>"


def _printable(value: Any) -> Any:
    """``value`` with every str in it, keys included, passed through ``errors.printable``."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_printable(item) for item in value]
    try:
        _encoder.encode(value)  # any other value is kept as it renders, if it renders
    except UnicodeEncodeError:
        return printable(repr(value))
    return value


# The processors below are plain functions, not objects with ``__call__``: calling those costs
# CPython several times as much, and the access log runs them on every request.


def merge_contextvars(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """``structlog.contextvars.merge_contextvars``, reading each variable once and recognising
    structlog's variables by identity once it has seen them, not by their names each time."""
    names = _merged_names
    for var, value in contextvars.copy_context().items():
        if value is _UNBOUND:
            continue
        key = names.get(var)
        if key is None:
            if len(names) >= _MAX_NAMES:
                names.clear()  # variables made on the fly (unusual) must not grow it forever
            name = var.name
            key = names[var] = sys.intern(name[len(_PREFIX) :]) if name.startswith(_PREFIX) else ""
        if key:
            event_dict.setdefault(key, value)
    return event_dict


_merged_names: dict[ContextVar[Any], str] = {}  # variable -> its key, "" if not structlog's
_MAX_NAMES = 1_024


def add_log_level(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """``structlog.processors.add_log_level``: ``level`` is the method's name (``warn`` is
    ``warning``, ``exception`` is ``error``), without its helper call."""
    event_dict["level"] = _LEVEL_NAMES.get(method_name, method_name)
    return event_dict


_LEVEL_NAMES = {"warn": "warning", "exception": "error"}


def utc_time_stamper() -> Callable[[Any, str, EventDict], EventDict]:
    """A processor adding ``timestamp``: ISO 8601 in UTC with microseconds and a ``Z``, as
    structlog's ``TimeStamper(fmt="iso", utc=True)`` writes it (except that it always writes the
    fraction), with the date and time of day formatted once per second.

    The clock's nanoseconds are read as decimal digits: the seconds are all but the last nine,
    the microseconds the six after them. Slicing the text costs less than dividing the integer
    and formatting the remainder with a zero-padded width (the access log stamps every request).
    """
    seconds_now, prefix = "", ""

    def stamp(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        nonlocal seconds_now, prefix
        digits = str(time.time_ns())
        seconds = digits[:-9]
        if seconds != seconds_now:
            prefix = datetime.fromtimestamp(int(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            seconds_now = seconds
        event_dict["timestamp"] = prefix + digits[-9:-3] + "Z"
        return event_dict

    return stamp


def format_exc_info(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """``structlog.processors.format_exc_info``, called only when the line has an exc_info."""
    if "exc_info" in event_dict:
        return structlog.processors.format_exc_info(logger, method_name, event_dict)
    return event_dict


def render_json(logger: Any, method_name: str, event_dict: EventDict) -> bytes:
    """The line as one JSON object (``repr`` for what JSON cannot hold, lone surrogates
    escaped)."""
    return _json(event_dict)
