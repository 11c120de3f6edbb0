"""A parsed module as the checks see it, the allow-list of plugin callers, and a check's type."""

from __future__ import annotations

import ast
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from jobwarden.governance.findings import Finding, shown_path
from jobwarden.governance.rules.names import Names
from jobwarden.governance.rules.tool_index import ToolIndex

ALLOWED_PLUGIN_CALLERS: tuple[str, ...] = (
    "jobwarden/actors/tool_runner.py",
    "jobwarden/actors/process_worker.py",
    # Plugin startup/shutdown hooks are not tool calls: no job, input or deadline of a job's
    # own, so they run beside the ToolRunner, each recorded by the registry's record_hook.
    "jobwarden/actors/plugin_hooks.py",
)


@dataclass(frozen=True)
class Source:
    """One parsed module, as the checks see it."""

    path: Path
    tree: ast.Module
    tools: ToolIndex = field(default_factory=ToolIndex)

    # Walked once and shared by the checks: walking is most of a scan's time after parsing.
    @cached_property
    def nodes(self) -> list[ast.AST]:
        """Every node of the module, each after its parent (breadth first, as `ast.walk`)."""
        return list(ast.walk(self.tree))

    @cached_property
    def parents(self) -> dict[ast.AST, ast.AST]:
        """Each node's parent."""
        return {child: node for node in self.nodes for child in ast.iter_child_nodes(node)}

    @cached_property
    def names(self) -> Names:
        return Names(self.nodes)

    @property
    def allows_plugin_calls(self) -> bool:
        """Whether the module is one `ALLOWED_PLUGIN_CALLERS` names, where it is imported from.

        Symbolic links are not followed: `jobwarden/plugins/x.py` linking to a tool_runner.py
        elsewhere is imported as `jobwarden.plugins.x`. And `jobwarden` must be a top-level
        package (no `__init__.py` above it): `jobwarden/plugins/jobwarden/actors/tool_runner.py`
        is a module of the plugins package, whatever its name ends with.
        """
        where = Path(os.path.abspath(self.path))
        for suffix in ALLOWED_PLUGIN_CALLERS:
            depth = len(Path(suffix).parts)
            if where.parts[-depth:] == Path(suffix).parts and len(where.parts) > depth:
                return not (where.parents[depth - 1] / "__init__.py").exists()
        return False

    def finding(self, node: ast.expr | ast.excepthandler, code: str, message: str) -> Finding:
        return Finding(shown_path(self.path), node.lineno, node.col_offset + 1, code, message)


Check = Callable[[Source], Iterator[Finding]]
