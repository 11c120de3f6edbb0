"""JW008: no print(); output goes through logs or an explicit stream."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from jobwarden.governance.findings import Finding
from jobwarden.governance.rules.names import Names
from jobwarden.governance.rules.source import Source


def print_call(src: Source) -> Iterator[Finding]:
    """JW008: output goes through structured logs or an explicit stream, never `print`.

    A stray print corrupts machine-readable output (JSON logs, `--json`) and bypasses the
    job_id / tool context that logging binds. `builtins.print`, an alias of print, and print
    passed to a call (`map(print, rows)`, `functools.partial(print, ...)`) print all the same.
    """
    names = src.names
    for node in src.nodes:
        match node:
            case ast.Call(func=callee, args=args, keywords=keywords):
                if _is_print(callee, names):
                    yield src.finding(node, "JW008", "print() call; log, or write to a stream")
                for arg in (*args, *(keyword.value for keyword in keywords)):
                    if _is_print(arg, names):
                        yield src.finding(
                            arg, "JW008", "print passed to a call; log, or write to a stream"
                        )


def _is_print(expr: ast.expr, names: Names) -> bool:
    match expr:
        case ast.Name(id="print"):
            return True
    return "builtins.print" in names.resolve(expr)
