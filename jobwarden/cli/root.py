"""The ``jobwarden`` command group and ``main``, the console-script entry point."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Sequence
from typing import TextIO

import click

from jobwarden.cli.job_commands import cancel_command, jobs_command, submit_command
from jobwarden.cli.local_commands import scan_command, serve_command, tools_command
from jobwarden.cli.outcomes import EXIT_CODES_HELP, report_interrupted
from jobwarden.cli.watch_command import watch_command


@click.group("jobwarden", epilog=EXIT_CODES_HELP)
def cli() -> None:
    """Supervised plugin execution: run the server (serve, tools, scan) or use a running one
    (submit, watch, jobs, cancel; --url / JOBWARDEN_URL and --api-key / JOBWARDEN_API_KEY)."""


for _command in (
    serve_command,
    tools_command,
    scan_command,
    submit_command,
    watch_command,
    jobs_command,
    cancel_command,
):
    cli.add_command(_command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jobwarden <command> ...`` and return its exit code.

    Usage errors and ``--help`` raise ``SystemExit`` (2 and 0) after printing, as click does.
    A Ctrl-C that no command handles itself (while parsing, loading plugins, scanning) prints
    one line and returns 130; output to a pipe closed early returns 1, printing nothing more,
    and output to a full disk returns 1 with one line.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with cli.make_context("jobwarden", args) as ctx:
            code = int(cli.invoke(ctx) or 0)
        # Here rather than at exit, where a failure is Python's "Exception ignored" and exit 120.
        sys.stdout.flush()
        return code
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        return report_interrupted()
    except BrokenPipeError:
        # Whoever read the output stopped (`jobwarden jobs --json | head -1`): end quietly with 1,
        # as rich does for what it prints, rather than with a traceback.
        _silence_output(sys.stdout, sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in _FULL:
            raise
        # `jobwarden jobs --json > out.json` on a full disk: one line, as for any other failure.
        sys.stderr.write(f"jobwarden: cannot write the output: {os.strerror(exc.errno)}\n")
        _silence_output(sys.stdout)
        return 1


# Where output cannot go because the file it goes to is full: the disk, a quota, a size limit.
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def _silence_output(*streams: TextIO) -> None:
    """Point ``streams`` at /dev/null, so that Python's flush of what is still buffered, at
    exit, does not fail again ("Exception ignored ... BrokenPipeError")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in streams:
            with contextlib.suppress(OSError, ValueError):  # ValueError: no file descriptor
                os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)
