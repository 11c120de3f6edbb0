"""Ctrl-C while the command line starts: one line on stderr and exit 130, never a traceback.

Each test stops the process inside a chosen import (a finder that says so on stdout, then waits
on stdin), sends SIGINT there, and reads what the process printed.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tomllib

import pytest

from tests.server_process import ROOT, clean_env

# A finder placed first on sys.meta_path: the import of BLOCKED waits in a read that only a
# signal ends, after saying so, so the test knows the process is inside that import. It writes
# to the real stdout: `tools` sends sys.stdout to stderr while it imports plugins.
BLOCKER = """
import sys

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name == {blocked!r}:
            sys.__stdout__.write("importing\\n")
            sys.__stdout__.flush()
            sys.stdin.readline()
        return None

sys.meta_path.insert(0, Blocker())
"""


def console_script() -> str:
    """What pip's generated ``jobwarden`` script runs: the entry point pyproject.toml names."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, attr = scripts["jobwarden"].split(":")
    return f"import sys\nfrom {module} import {attr}\nsys.exit({attr}())\n"


def interrupted_in(blocked: str, program: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``program`` (Python source) with ``args``, send SIGINT while it imports ``blocked``;
    its exit code and output."""
    process = subprocess.Popen(
        [sys.executable, "-c", BLOCKER.format(blocked=blocked) + program, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=ROOT,
    )
    with process:
        assert process.stdout is not None
        line = process.stdout.readline()
        if line == "importing\n":
            process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    assert line == "importing\n", f"{blocked} was never imported: {line + out}{err}"
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


@pytest.mark.parametrize("blocked", ["jobwarden", "jobwarden.cli.root", "aiohttp"])
def test_ctrl_c_while_the_console_script_imports_is_one_line_and_130(blocked: str) -> None:
    """A Ctrl-C during any import of the `jobwarden` script, the package's own first, is one line
    and exit 130."""
    done = interrupted_in(blocked, console_script(), "--help")
    assert (done.returncode, done.stderr) == (130, "jobwarden: interrupted\n")
    assert done.stdout == ""


def test_ctrl_c_while_python_m_imports_the_command_line_is_one_line_and_130() -> None:
    """`python -m jobwarden` stopped while it imports jobwarden.cli prints one line, exit 130."""
    run_module = "import runpy\nrunpy.run_module('jobwarden', run_name='__main__', alter_sys=True)"
    done = interrupted_in("jobwarden.cli", run_module, "--help")
    assert (done.returncode, done.stderr) == (130, "jobwarden: interrupted\n")


def test_ctrl_c_while_tools_loads_a_plugin_is_one_line_and_130() -> None:
    """A Ctrl-C while `jobwarden tools` imports a plugin module is one line and exit 130."""
    args = ("tools", "--no-builtin", "--no-entry-points", "--plugin", "slow_plugin:plugin")
    done = interrupted_in("slow_plugin", console_script(), *args)
    assert (done.returncode, done.stderr) == (130, "jobwarden: interrupted\n")
    assert done.stdout == ""
