"""JW007: no time.sleep inside async def."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from jobwarden.governance.findings import Finding
from jobwarden.governance.rules.source import Source
from jobwarden.governance.rules.syntax import walk_local


def blocking_sleep_in_async(src: Source) -> Iterator[Finding]:
    """JW007: `time.sleep` in a coroutine stalls every job on the event loop.

    A plain function nested in the coroutine (for example one handed to `anyio.to_thread`) runs
    elsewhere and may block.
    """
    names = src.names
    for node in src.nodes:
        if isinstance(node, ast.AsyncFunctionDef):
            for inner in walk_local(node.body):
                match inner:
                    case ast.Call(func=callee) if "time.sleep" in names.resolve(callee):
                        yield src.finding(
                            inner,
                            "JW007",
                            "time.sleep blocks the event loop; await anyio.sleep instead",
                        )
