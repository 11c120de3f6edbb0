"""What every client command shares: ``--url``, ``--api-key``, ``--json``, and how it is run."""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click

from jobwarden.cli.outcomes import CommandError, ExitCode
from jobwarden.cli.render import message_console

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_URL = "http://127.0.0.1:8080"


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL")
    return value


def client_options(command: F) -> F:
    """``--url``, ``--api-key`` and ``--json``, each with its environment variable."""
    options = [
        click.option(
            "--url",
            default=DEFAULT_URL,
            envvar="JOBWARDEN_URL",
            show_default=True,
            show_envvar=True,
            callback=_check_url,
            help="the jobwarden server",
        ),
        click.option(
            "--api-key",
            envvar="JOBWARDEN_API_KEY",
            show_envvar=True,
            help="sent as Authorization: Bearer <key>",
        ),
        click.option(
            "--json", "as_json", is_flag=True, help="machine output: JSON on stdout, nothing else"
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_client(
    action: Callable[[], Awaitable[ExitCode]], *, interrupted: ExitCode = ExitCode.INTERRUPTED
) -> int:
    """Run ``action`` on asyncio (aiohttp's loop); a ``CommandError`` becomes its line and code.

    Ctrl-C ends the command with ``interrupted``.
    """
    try:
        return int(anyio.run(action, backend="asyncio"))
    except CommandError as exc:
        message_console().print(f"jobwarden: {exc.message}", markup=False, soft_wrap=True)
        return int(exc.code)
    except KeyboardInterrupt:
        return int(interrupted)
