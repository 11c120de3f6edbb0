"""A governance finding: one rule broken at one place in one file."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


def shown_path(path: Path) -> str:
    """``path`` as a finding names it: bytes of a file name that are not UTF-8 (which Python
    carries as lone surrogates) as backslash escapes, which the text and JSON reports can encode."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class Finding(msgspec.Struct, frozen=True, order=True):
    """A rule violation; findings order by path, line, column, then code, as a report lists them.

    `line` and `col` are 1-based, as compilers and ruff print them.
    """

    path: str
    line: int
    col: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.code} {self.message}"
