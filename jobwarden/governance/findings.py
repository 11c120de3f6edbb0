"""A governance finding: one rule broken at one place in one file."""

from __future__ import annotations

import msgspec


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
