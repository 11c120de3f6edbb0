"""What every client command shares: ``--url``, ``--api-key``, ``--json``, and how it is run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click

from jobwarden.cli.client import server_url
from jobwarden.cli.outcomes import CommandError, ExitCode, report_interrupted
from jobwarden.cli.render import message_console
from jobwarden.errors import control_character

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_URL = "http://127.0.0.1:8080"


def _as_typed(text: str) -> str:
    """``text`` as it was typed, bytes that are not UTF-8 shown as ``\\xNN``."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return raw.decode("utf-8", "backslashreplace")


class Utf8Text(click.ParamType[str]):
    """Text that is valid UTF-8: what goes into JSON and URLs must be.

    Arguments that are not (on POSIX, bytes that are not UTF-8 reach Python as lone surrogates,
    PEP 383) are refused naming the parameter, instead of failing while the request is encoded.
    """

    name = "text"

    def __init__(self, *, empty: bool = True) -> None:
        self.empty = empty  # False for names: an empty job id or tool name names nothing

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """``value`` if it is valid UTF-8 (and not empty, unless empty text is allowed)."""
        text = str(value)
        try:
            text.encode()
        except UnicodeEncodeError:
            self.fail(f"'{_as_typed(text)}' is not valid UTF-8", param, ctx)
        if not text and not self.empty:
            self.fail("must not be empty", param, ctx)
        return text


class ApiKeyText(click.ParamType[str]):
    """An API key: UTF-8 text without control characters, which an HTTP header cannot carry.

    Its errors never show the key.
    """

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """``value`` if it can be sent as a Bearer token."""
        key = str(value)
        try:
            key.encode()
        except UnicodeEncodeError:
            self.fail("the key is not valid UTF-8", param, ctx)
        where = control_character(key)
        if where is not None:
            self.fail(
                f"the key holds a control character ({where}); an HTTP header cannot carry it",
                param,
                ctx,
            )
        return key


UTF8_TEXT = Utf8Text()
NAME_TEXT = Utf8Text(empty=False)


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        server_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
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
            type=UTF8_TEXT,
            callback=_check_url,
            help="the jobwarden server",
        ),
        click.option(
            "--api-key",
            type=ApiKeyText(),
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

    Ctrl-C ends the command with ``interrupted``: 130 says so on stderr, any other code is the
    command's ordinary end (``watch`` runs until Ctrl-C).
    """
    try:
        return int(anyio.run(action, backend="asyncio"))
    except CommandError as exc:
        message_console().print(f"jobwarden: {exc.message}", markup=False, soft_wrap=True)
        return int(exc.code)
    except KeyboardInterrupt:
        return report_interrupted() if interrupted is ExitCode.INTERRUPTED else int(interrupted)
