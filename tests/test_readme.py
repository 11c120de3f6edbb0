"""The README's embedding example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
