"""JW001: plugin code is called only by the ToolRunner."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from jobwarden.governance.findings import Finding
from jobwarden.governance.rules.plugin_flow import Flow
from jobwarden.governance.rules.source import Source


def plugin_code_outside_allow_list(src: Source) -> Iterator[Finding]:
    """JW001: only the ToolRunner may call plugin code.

    The ToolRunner is the one choke point that validates, times out, cancels, wraps failures in
    an error envelope and records metrics; a plugin called from anywhere else skips all of it.
    Handing `tool.func` to a thread runner or `functools.partial` is calling it by proxy, and
    binding it to a name, a dict or a tuple first, or returning it, only defers the call: `Flow`
    follows it. A function declared a tool or a hook (`@plugin.tool(...)`, `@plugin.on_startup`)
    is plugin code too, in its module and wherever it is imported: tools share code through a
    plain helper, not by calling one another. `getattr(tool, name)` with a computed name, and
    a function resolved from a string (`pkgutil.resolve_name`), cannot be followed.
    """
    if src.allows_plugin_calls:
        return
    for ref, how in Flow(src).uses:
        yield src.finding(
            ref, "JW001", f"plugin code `{ast.unparse(ref)}` {how} outside the ToolRunner"
        )
