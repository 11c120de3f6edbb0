"""The ``jobwarden`` command line: ``serve``, ``tools`` and ``scan``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

import anyio
import msgspec

from jobwarden.errors import StoreError, SupervisorCrashed
from jobwarden.governance import scanner
from jobwarden.plugins.listing import failures, render_json, render_text
from jobwarden.server import DEFAULT_STORE, ConfigError, ServeOptions, load_registry, serve


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"JOBWARDEN_{name}", default)


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve_cmd = sub.add_parser("serve", help="run the HTTP server (flags also from JOBWARDEN_*)")
    serve_cmd.add_argument("--host", default=_env("HOST", "127.0.0.1"))
    serve_cmd.add_argument("--port", type=int, default=int(_env("PORT", "8080") or 8080))
    serve_cmd.add_argument(
        "--store",
        default=_env("STORE", DEFAULT_STORE),
        help="memory://, sqlite:///path.db[?synchronous=full|normal] or"
        f" redis://host:port/db[?prefix=name] ({DEFAULT_STORE})",
    )
    _plugin_arguments(serve_cmd)
    serve_cmd.add_argument("--keys-file", default=_env("KEYS_FILE"))
    serve_cmd.add_argument(
        "--log-format", choices=["json", "console"], default=_env("LOG_FORMAT", "console")
    )
    serve_cmd.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=_env("LOG_LEVEL", "info"),
        help="warning silences the per-request access log",
    )
    serve_cmd.add_argument(
        "--max-body-bytes", type=int, default=int(_env("MAX_BODY_BYTES", str(1 << 20)) or 0)
    )
    serve_cmd.add_argument(
        "--retention-age-s",
        type=float,
        default=float(_env("RETENTION_AGE_S", "604800") or 0),
        help="purge finished jobs this many seconds after they ended (7 days; 0: never)",
    )
    serve_cmd.add_argument(
        "--retention-jobs",
        type=int,
        default=int(_env("RETENTION_JOBS", "1000000") or 0),
        help="keep at most this many finished jobs, newest first (1000000; 0: no cap)",
    )


def _plugin_arguments(cmd: argparse.ArgumentParser) -> None:
    """Which plugins to load: shared by ``serve`` and ``tools``, so both see the same set."""
    cmd.add_argument(
        "--plugin",
        action="append",
        default=[p for p in (_env("PLUGINS") or "").split(",") if p],
        help="module:attr of a Plugin to load (repeatable; JOBWARDEN_PLUGINS is comma-separated)",
    )
    cmd.add_argument(
        "--no-builtin",
        action="store_true",
        default=_env("NO_BUILTIN") in {"1", "true", "yes"},
        help="skip the plugins shipped with jobwarden, builtin and imaging (JOBWARDEN_NO_BUILTIN)",
    )
    cmd.add_argument(
        "--config",
        default=_env("CONFIG"),
        help='TOML file with plugins = ["module:attr", ...] (JOBWARDEN_CONFIG)',
    )
    cmd.add_argument(
        "--no-entry-points",
        action="store_true",
        default=_env("NO_ENTRY_POINTS") in {"1", "true", "yes"},
        help="skip plugins installed in the jobwarden.plugins entry-point group",
    )


def _tools_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tools_cmd = sub.add_parser("tools", help="print the manifests of the plugins serve would load")
    _plugin_arguments(tools_cmd)
    tools_cmd.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _tools(parsed: argparse.Namespace) -> int:
    """Print the manifests; exit 1 if a plugin failed to load (the server would still run)."""
    try:
        # Importing plugins runs their code, and failures are logged: stdout is the listing's.
        with contextlib.redirect_stdout(sys.stderr):
            registry = load_registry(_plugin_options(parsed))
    except ConfigError as exc:
        sys.stderr.write(f"jobwarden tools: {exc}\n")
        return 2
    sys.stdout.write(render_json(registry) if parsed.json else render_text(registry))
    return 1 if failures(registry) else 0


def _plugin_options(parsed: argparse.Namespace) -> ServeOptions:
    return ServeOptions(
        plugins=tuple(parsed.plugin),
        builtin=not parsed.no_builtin,
        config=parsed.config,
        entry_points=not parsed.no_entry_points,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``jobwarden <command> ...`` and return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["scan"]:
        return scanner.main(args[1:])
    parser = argparse.ArgumentParser(prog="jobwarden", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _tools_parser(sub)
    sub.add_parser("scan", help="run the governance scanner (see `jobwarden scan --help`)")
    parsed = parser.parse_args(args)
    if parsed.command == "tools":
        return _tools(parsed)
    options = msgspec.structs.replace(
        _plugin_options(parsed),
        host=parsed.host,
        port=parsed.port,
        store=parsed.store,
        keys_file=parsed.keys_file,
        log_format=parsed.log_format,
        log_level=parsed.log_level,
        max_body_bytes=parsed.max_body_bytes,
        retention_age_s=parsed.retention_age_s,
        retention_jobs=parsed.retention_jobs,
    )
    try:
        anyio.run(serve, options, backend="asyncio")
    except ConfigError as exc:
        sys.stderr.write(f"jobwarden serve: {exc}\n")
        return 2
    except (StoreError, SupervisorCrashed) as exc:
        sys.stderr.write(f"jobwarden serve: {exc}\n")
        return 1
    return 0
