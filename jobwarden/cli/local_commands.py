"""The commands that work on this machine, without a server: ``serve``, ``tools`` and ``scan``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import click
import msgspec

from jobwarden.cli.seconds import Seconds
from jobwarden.errors import StoreError, SupervisorCrashed
from jobwarden.governance import scanner
from jobwarden.plugins.listing import as_written, failures, render_json, render_text
from jobwarden.server import (
    DEFAULT_STORE,
    ConfigError,
    ListenError,
    ServeOptions,
    load_registry,
    serve,
)
from jobwarden.transport import ServerSettings
from jobwarden.transport.wire import MAX_TIMEOUT_S

F = TypeVar("F", bound=Callable[..., Any])
# The smallest --max-body-bytes: below it even an ordinary submission's body is refused (and
# aiohttp reads 0 as no limit at all), so the server would start only to refuse every submit.
MIN_BODY_BYTES = 1024


class CommaSeparated(click.ParamType[str]):
    """A repeatable string option whose environment variable lists its values split by commas."""

    name = "text"
    envvar_list_splitter = ","

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """Any text."""
        return str(value)


def _plugin_options(command: F) -> F:
    """Which plugins to load: shared by ``serve`` and ``tools``, so both see the same set."""
    options = [
        click.option(
            "--plugin",
            "plugins",
            multiple=True,
            type=CommaSeparated(),
            envvar="JOBWARDEN_PLUGINS",
            metavar="MODULE:ATTR",
            help="module:attr of a Plugin to load (repeatable; the variable is comma-separated)",
        ),
        click.option(
            "--no-builtin",
            is_flag=True,
            envvar="JOBWARDEN_NO_BUILTIN",
            help="skip the plugins shipped with jobwarden, builtin and imaging",
        ),
        click.option(
            "--config",
            envvar="JOBWARDEN_CONFIG",
            help='TOML file with plugins = ["module:attr", ...]',
        ),
        click.option(
            "--no-entry-points",
            is_flag=True,
            envvar="JOBWARDEN_NO_ENTRY_POINTS",
            help="skip plugins installed in the jobwarden.plugins entry-point group",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load_options(
    plugins: tuple[str, ...], no_builtin: bool, config: str | None, no_entry_points: bool
) -> ServeOptions:
    return ServeOptions(
        plugins=tuple(p for p in plugins if p),
        builtin=not no_builtin,
        config=config,
        entry_points=not no_entry_points,
    )


@click.command("serve")
@click.option("--host", default="127.0.0.1", envvar="JOBWARDEN_HOST", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    envvar="JOBWARDEN_PORT",
    show_default=True,
)
@click.option(
    "--store",
    default=DEFAULT_STORE,
    envvar="JOBWARDEN_STORE",
    help="memory://, sqlite:///path.db[?synchronous=full|normal] or"
    f" redis://host:port/db[?prefix=name] ({DEFAULT_STORE})",
)
@_plugin_options
@click.option("--keys-file", envvar="JOBWARDEN_KEYS_FILE")
@click.option(
    "--log-format",
    type=click.Choice(["json", "console"]),
    default="console",
    envvar="JOBWARDEN_LOG_FORMAT",
    show_default=True,
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    envvar="JOBWARDEN_LOG_LEVEL",
    show_default=True,
    help="warning silences the per-request access log",
)
@click.option(
    "--max-body-bytes",
    type=click.IntRange(min=MIN_BODY_BYTES),
    default=1 << 20,
    envvar="JOBWARDEN_MAX_BODY_BYTES",
    show_default=True,
    help=f"the largest request body accepted (at least {MIN_BODY_BYTES}); a larger one is"
    " refused with 413 payload_too_large",
)
@click.option(
    "--max-wait-s",
    type=Seconds(min=0, max=MAX_TIMEOUT_S),
    # As written, so that --help shows 60, not 60.0; the option's type makes it a float again.
    default=as_written(ServerSettings().max_wait_s),
    envvar="JOBWARDEN_MAX_WAIT_S",
    show_default=True,
    help="the longest a request waits for its job: ?wait= on a submit, the seed's sync route",
)
@click.option(
    "--retention-age-s",
    type=Seconds(min=0),
    default=604800.0,
    envvar="JOBWARDEN_RETENTION_AGE_S",
    help="purge finished jobs this many seconds after they ended (7 days; 0: never)",
)
@click.option(
    "--retention-jobs",
    type=click.IntRange(min=0),
    default=1_000_000,
    envvar="JOBWARDEN_RETENTION_JOBS",
    help="keep at most this many finished jobs, newest first (1000000; 0: no cap)",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=64,
    envvar="JOBWARDEN_CONCURRENCY",
    show_default=True,
    help="jobs this node runs at once (its ToolRunners); a tool's max_concurrency caps it further",
)
@click.option(
    "--allowed-origin",
    "allowed_origins",
    multiple=True,
    type=CommaSeparated(),
    envvar="JOBWARDEN_ALLOWED_ORIGINS",
    metavar="URL",
    help="a browser origin (https://host[:port]) whose pages may open the event websockets,"
    " besides this server's own (repeatable; the variable is comma-separated)",
)
@click.option(
    "--tracing",
    is_flag=True,
    envvar="JOBWARDEN_TRACING",
    help="OpenTelemetry spans per job, exported as OTEL_* says (needs the tracing extra)",
)
def serve_command(
    plugins: tuple[str, ...],
    no_builtin: bool,
    config: str | None,
    no_entry_points: bool,
    **settings: Any,
) -> int:
    """Run the HTTP server (every flag also from its JOBWARDEN_* variable).

    Exits 0 after SIGTERM or Ctrl-C, 1 when the store or supervisor fails or the port is taken,
    2 for a bad configuration. A second signal while it stops ends it at once, by that signal.
    """
    options = msgspec.structs.replace(
        _load_options(plugins, no_builtin, config, no_entry_points), **settings
    )
    try:
        anyio.run(serve, options, backend="asyncio")
    except ConfigError as exc:
        sys.stderr.write(f"jobwarden serve: {exc}\n")
        return 2
    except (StoreError, SupervisorCrashed, ListenError) as exc:
        sys.stderr.write(f"jobwarden serve: {exc}\n")
        return 1
    return 0


@click.command("tools")
@_plugin_options
@click.option("--json", "as_json", is_flag=True, help="one JSON document on stdout")
def tools_command(
    plugins: tuple[str, ...],
    no_builtin: bool,
    config: str | None,
    no_entry_points: bool,
    as_json: bool,
) -> int:
    """Print the manifests of the plugins serve would load.

    Exits 1 if a plugin failed to load (the server would still run), 2 for a bad config file.
    """
    try:
        # Importing plugins runs their code, and failures are logged: stdout is the listing's.
        with contextlib.redirect_stdout(sys.stderr):
            registry = load_registry(_load_options(plugins, no_builtin, config, no_entry_points))
    except ConfigError as exc:
        sys.stderr.write(f"jobwarden tools: {exc}\n")
        return 2
    sys.stdout.write(render_json(registry) if as_json else render_text(registry))
    return 1 if failures(registry) else 0


@click.command(
    "scan",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def scan_command(args: tuple[str, ...]) -> int:
    """Run the governance scanner (see `jobwarden scan --help`)."""
    return scanner.main(list(args))


# Each option's JOBWARDEN_* variable shows in --help beside it.
for _param in (*serve_command.params, *tools_command.params):
    if isinstance(_param, click.Option) and _param.envvar:
        _param.show_envvar = True
