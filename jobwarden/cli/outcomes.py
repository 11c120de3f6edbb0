"""Exit codes scripts can rely on, and how a job's end or a server's answer maps onto them."""

from __future__ import annotations

import sys
from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """What a client command's exit status means."""

    OK = 0
    FAILED = 1
    USAGE = 2
    STOPPED = 3
    INTERRUPTED = 130


EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0    succeeded (or the command did what it was asked)\n"
    "  1    the job failed, the server answered with an error, or it cannot be reached\n"
    "  2    usage: bad flags, invalid JSON, unknown tool or job, input the server refused\n"
    "  3    the job was cancelled or timed out\n"
    "  130  interrupted (Ctrl-C); a job being waited for keeps running"
)

_BY_STATE = {
    "succeeded": ExitCode.OK,
    "failed": ExitCode.FAILED,
    "cancelled": ExitCode.STOPPED,
    "timed_out": ExitCode.STOPPED,
}

# Answers about what the caller typed: a wrong tool or job name, or input the server refused.
_USAGE_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_input",
        "not_found",
        "tool_not_found",
        "job_not_found",
        "payload_too_large",
        "unsupported_media_type",
    }
)

_AUTH_HINTS = {
    "unauthorized": "give a key with --api-key or JOBWARDEN_API_KEY",
    "forbidden": "this key lacks the scope for that",
}


class CommandError(Exception):
    """A client command ends with ``code``; ``message`` is its one line on stderr."""

    def __init__(self, code: ExitCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Unreachable(CommandError):
    """The server cannot be reached (or stopped answering): worth trying again."""

    def __init__(self, message: str) -> None:
        super().__init__(ExitCode.FAILED, message)


def report_interrupted() -> int:
    """Say on stderr that Ctrl-C ended the command; its exit code, 130.

    The console script's launcher (``_jobwarden_cli``) prints the same line for a Ctrl-C while
    the command line is still being imported.
    """
    sys.stderr.write("jobwarden: interrupted\n")
    sys.stderr.flush()
    return int(ExitCode.INTERRUPTED)


def exit_code_for_state(state: str) -> ExitCode:
    """A terminal job state's exit code."""
    return _BY_STATE[state]


def server_refused(url: str, error: dict[str, Any], retry_after: str | None = None) -> CommandError:
    """The error an error envelope from the server at ``url`` becomes; ``retry_after`` is the
    answer's Retry-After header (429 overloaded or rate_limited, 503 shutting_down)."""
    kind = str(error.get("type", "error"))
    message = f"{kind}: {error.get('message', '')}"
    if kind in _AUTH_HINTS:
        return CommandError(
            ExitCode.FAILED, f"{url} refused the request: {message} ({_AUTH_HINTS[kind]})"
        )
    # Only the delta-seconds form jobwarden sends: the header is the server's text, and a date
    # or anything else is not worth printing to a terminal unchecked.
    if retry_after is not None and retry_after.strip().isdigit() and retry_after.isascii():
        message += f" (retry after {int(retry_after)}s)"
    code = ExitCode.USAGE if kind in _USAGE_ERRORS else ExitCode.FAILED
    return CommandError(code, message)
