"""The README's embedding example runs as written, and its configuration table is complete."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click

from jobwarden.cli.local_commands import serve_command
from jobwarden.errors import OutcomeType

README = Path(__file__).resolve().parent.parent / "README.md"


def test_embedding_example_runs() -> None:
    """The first python block of the README runs to completion and prints the result."""
    block = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    assert block is not None
    done = subprocess.run(
        [sys.executable, "-c", block.group(1)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "{'text': 'again'}" in done.stdout
    assert "jobwarden.job.succeeded" in done.stdout


def _configuration_rows() -> dict[str, str]:
    """The rows of the README's configuration table, by the flag each starts with."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `--")]
    return {row[3:].split("`")[0].split()[0]: row for row in rows}


def _serve_options() -> list[click.Option]:
    """The options `jobwarden serve --help` shows."""
    return [p for p in serve_command.params if isinstance(p, click.Option) and not p.hidden]


def test_configuration_table_lists_every_serve_flag() -> None:
    """Each flag of `jobwarden serve` is a row naming its variable, and each row is a real flag."""
    rows = _configuration_rows()
    flags = {max(option.opts, key=len): option for option in _serve_options()}
    assert sorted(rows) == sorted(flags)
    for flag, option in flags.items():
        assert f"`{option.envvar}" in rows[flag], (flag, option.envvar)


def test_configuration_table_states_the_defaults() -> None:
    """The default column of each flag with a scalar default holds the value serve really uses."""
    rows = _configuration_rows()
    for option in _serve_options():
        default = option.default
        # Flags, repeatable options and those with no default (click's UNSET) have no value.
        if option.is_flag or not isinstance(default, int | float | str):
            continue
        shown = f"{default:g}" if isinstance(default, float) else str(default)
        flag = max(option.opts, key=len)
        assert shown in rows[flag].split(" | ")[2], (flag, shown)


def test_every_variable_named_exists() -> None:
    """Each JOBWARDEN_* variable the README names is read somewhere in the package."""
    source = "".join(p.read_text() for p in (README.parent / "jobwarden").rglob("*.py"))
    for name in set(re.findall(r"JOBWARDEN_[A-Z_]*[A-Z]", README.read_text())):
        assert f'"{name}"' in source, name


def test_outcomes_name_every_error_type() -> None:
    """The embedding section's list of outcomes names every error type a job can end with."""
    outcomes = README.read_text().split("- **Outcomes**", 1)[1].split("\n- **", 1)[0]
    for outcome in OutcomeType:
        assert f"`{outcome.value}`" in outcomes, outcome.value
