"""The example third-party plugin under examples/: installed for real, then discovered and run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello-plugin"

RUN_GREET = """
import anyio
from jobwarden import Supervisor
from jobwarden.plugins.discovery import build_registry, discover

async def main() -> None:
    registry = build_registry([], discover())
    async with Supervisor(registry=registry) as sup:
        print(await sup.run("hello.greet", {"name": "Ada", "excited": True}, timeout=30))

anyio.run(main)
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose PYTHONPATH holds the example, installed by pip from a copy of it."""
    work = tmp_path_factory.mktemp("example")
    source = work / "source"
    shutil.copytree(EXAMPLE, source)  # the build writes beside its sources: keep the repo clean
    target = work / "site"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-deps", "--target", str(target), str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBWARDEN_")}
    return {**env, "PYTHONPATH": str(target)}


def test_jobwarden_tools_discovers_the_installed_plugin(installed: dict[str, str]) -> None:
    """`jobwarden tools --json` lists the example's plugin, found through its entry point."""
    done = subprocess.run(
        [sys.executable, "-m", "jobwarden", "tools", "--json"],
        env=installed,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    hello = next(p for p in listing["plugins"] if p["name"] == "hello")
    assert hello["version"] == "0.1.0"
    assert [t["name"] for t in hello["tools"]] == ["hello.greet"]
    assert listing["failed"] == []


def test_the_discovered_plugin_runs_jobs(installed: dict[str, str]) -> None:
    """A supervisor built from discovery alone runs hello.greet."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_GREET],
        env=installed,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'greeting': 'Hello, Ada!'}"
