"""The ``jobwarden`` command group and ``main``, the console-script entry point."""

from __future__ import annotations

import sys
from collections.abc import Sequence

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
    one line and returns 130.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with cli.make_context("jobwarden", args) as ctx:
            return int(cli.invoke(ctx) or 0)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        return report_interrupted()
