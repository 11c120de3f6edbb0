"""The command line entry point."""

from __future__ import annotations

import inspect
import subprocess
import sys

import click
import pytest

from jobwarden import Supervisor
from jobwarden.cli import cli, main
from jobwarden.cli.local_commands import serve_command
from jobwarden.server import ConfigError, ServeOptions, open_store, retention


def test_scan_command_is_clean_on_the_package(capsys: pytest.CaptureFixture[str]) -> None:
    """`jobwarden scan jobwarden` finds no violations and exits 0."""
    assert main(["scan", "jobwarden"]) == 0
    assert "no violations" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """No command or an unknown one exits 2 with usage; --help exits 0."""
    for argv in ([], ["bogus"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "scan" in out
    assert "serve" in out


def test_module_entry_point() -> None:
    """`python -m jobwarden scan` runs the same command."""
    done = subprocess.run(
        [sys.executable, "-m", "jobwarden", "scan", "jobwarden"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("argv", [["--concurrency", "0"], ["--concurrency", "many"]])
def test_serve_refuses_a_concurrency_below_one(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve --concurrency` takes a whole number of at least 1; anything else exits 2 naming it."""
    with pytest.raises(SystemExit) as caught:
        main(["serve", *argv])
    assert caught.value.code == 2
    assert "--concurrency" in capsys.readouterr().err


def test_serve_concurrency_defaults_to_the_supervisors() -> None:
    """Without --concurrency, serve starts as many ToolRunners as a Supervisor does by default."""
    default = inspect.signature(Supervisor).parameters["concurrency"].default
    option = next(p for p in serve_command.params if p.name == "concurrency")
    assert option.default == default
    assert ServeOptions().concurrency == default


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "86401", "soon"])
def test_serve_refuses_a_max_wait_that_is_not_seconds(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve --max-wait-s` takes a number of seconds in [0, 86400]; anything else exits 2."""
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--max-wait-s", value])
    assert caught.value.code == 2
    assert "--max-wait-s" in capsys.readouterr().err


def test_seconds_in_help_and_errors_read_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    """--help shows whole seconds as ints (86400, not 86400.0), a range error the value typed."""
    for command in ("submit", "serve"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "the server times it out) [0<x<=86400]" in shown
    assert "default: 60; 0<=x<=86400]" in shown
    assert "86400.0" not in shown
    assert "60.0" not in shown
    with pytest.raises(SystemExit):
        main(["submit", "x.y", "--timeout", "0"])
    assert "'--timeout': 0 is not in the range 0<x<=86400." in capsys.readouterr().err


def test_the_max_wait_default_is_still_seconds_as_a_float() -> None:
    """--max-wait-s's default, shown as 60, reaches serve as the float 60.0."""
    ctx = serve_command.make_context("serve", [])
    assert ctx.params["max_wait_s"] == 60.0
    assert isinstance(ctx.params["max_wait_s"], float)


FLOAT_OPTIONS = [
    (command, option)
    for command in cli.commands.values()
    for option in command.params
    if isinstance(option, click.Option) and isinstance(option.type, click.types.FloatParamType)
]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("command", "option"), FLOAT_OPTIONS, ids=[f"{c.name} {o.opts[0]}" for c, o in FLOAT_OPTIONS]
)
def test_every_float_option_refuses_what_is_not_a_number_of_seconds(
    command: click.Command, option: click.Option, value: str
) -> None:
    """NaN and infinities are refused by every float option of every command, naming it (NaN
    passes a FloatRange's bounds, and a JSON body carries it as null: no time limit at all)."""
    arguments = ["x" for p in command.params if isinstance(p, click.Argument) and p.required]
    with pytest.raises(click.BadParameter) as caught:
        command.make_context(command.name or "", [option.opts[0], value, *arguments])
    assert option.opts[0] in caught.value.format_message()
    assert f"{value} is not" in caught.value.format_message()


def test_the_float_options_are_found() -> None:
    """The options the NaN test checks include each command's seconds."""
    names = {f"{c.name} {o.opts[0]}" for c, o in FLOAT_OPTIONS}
    assert {"submit --timeout", "serve --max-wait-s", "serve --retention-age-s"} <= names


@pytest.mark.parametrize(
    ("flag", "variable", "value", "message"),
    [
        ("--port", "JOBWARDEN_PORT", "70000", "70000 is not in the range 0<=x<=65535"),
        ("--port", "JOBWARDEN_PORT", "-1", "-1 is not in the range 0<=x<=65535"),
        ("--max-body-bytes", "JOBWARDEN_MAX_BODY_BYTES", "-1", "-1 is not in the range x>=1024"),
        ("--max-body-bytes", "JOBWARDEN_MAX_BODY_BYTES", "0", "0 is not in the range x>=1024"),
        ("--max-body-bytes", "JOBWARDEN_MAX_BODY_BYTES", "1023", "not in the range x>=1024"),
        ("--retention-age-s", "JOBWARDEN_RETENTION_AGE_S", "-1", "-1 is not in the range x>=0."),
        ("--retention-jobs", "JOBWARDEN_RETENTION_JOBS", "-5", "-5 is not in the range x>=0"),
        ("--log-level", "JOBWARDEN_LOG_LEVEL", "loud", "'loud' is not one of 'debug', 'info'"),
    ],
)
def test_serve_refuses_a_value_out_of_range_before_starting(
    flag: str, variable: str, value: str, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port outside 0..65535 (an OverflowError from bind once serving), a body limit under
    1 KiB (a server refusing every submission; 0 meant no limit), a negative retention or an
    unknown log level is a usage error naming the flag, from the flag or its variable."""
    for argv, named in (([flag, value], flag), ([], f"{flag}' (env var: '{variable}')")):
        monkeypatch.setenv(variable, value)
        with pytest.raises(click.BadParameter) as caught:
            serve_command.make_context("serve", argv)
        assert named in caught.value.format_message()
        assert message in caught.value.format_message()


@pytest.mark.parametrize(
    ("flag", "name", "value"),
    [
        ("--port", "port", 0),
        ("--port", "port", 65535),
        ("--max-body-bytes", "max_body_bytes", 1024),
    ],
)
def test_serve_accepts_the_edges_of_the_port_and_body_limit_ranges(
    flag: str, name: str, value: int
) -> None:
    """Port 0 (any free port) and 65535, and a body limit of exactly 1 KiB, are accepted."""
    with serve_command.make_context("serve", [flag, str(value)]) as ctx:
        assert ctx.params[name] == value


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (ServeOptions(retention_age_s=-1.0), "max_age_s"),
        (ServeOptions(retention_age_s=float("nan")), "max_age_s"),
        (ServeOptions(retention_age_s=float("inf")), "max_age_s"),
        (ServeOptions(retention_jobs=-5), "max_jobs"),
    ],
)
def test_serve_refuses_a_negative_retention(options: ServeOptions, field: str) -> None:
    """A negative (or not-a-number, or infinite) retention age or count stops the start, naming
    it; 0 turns that criterion off."""
    with pytest.raises(ConfigError, match=f"^retention: {field} must be "):
        retention(options)
    off = retention(ServeOptions(retention_age_s=0, retention_jobs=0))
    assert (off.max_age_s, off.max_jobs) == (None, None)


@pytest.mark.parametrize(
    "url", ["redis://bob:secret@[::1/0", "sqlite://[x/a.db", "postgres://[x", "memory://["]
)
def test_a_store_url_urllib_cannot_split_is_a_config_error(url: str) -> None:
    """An unbalanced or bogus bracketed host (urllib's ValueError) is a ConfigError naming the
    URL, its password hidden, rather than a traceback."""
    with pytest.raises(ConfigError, match="is not a URL: Invalid IPv6 URL") as info:
        open_store(url)
    assert "secret" not in str(info.value)
