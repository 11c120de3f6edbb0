"""Functions declared plugin code (tools and plugin hooks), and the index of them across modules."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path
from typing import TypeGuard

# Decorators (`@plugin.tool(...)`, `@plugin.on_startup`) that declare a function plugin code.
_DECLARERS = frozenset({"tool", "on_startup", "on_shutdown"})


# A prefilter that no declaring decorator escapes, however it is spread over lines: an @, then
# `.tool` (or a hook declarer) before the next @.
_DECLARING = re.compile(rb"@[^@]*?\.\s*(?:tool|on_startup|on_shutdown)\b")


def declared_plugin_code(node: ast.AST) -> TypeGuard[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Whether `node` is a function a decorator declares a tool or a plugin hook."""
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    for decorator in node.decorator_list:
        match decorator:
            case ast.Attribute(attr=attr) | ast.Call(func=ast.Attribute(attr=attr)):
                if attr in _DECLARERS:
                    return True
    return False


class ToolIndex:
    """The names of the functions each module declares plugin code, read once per scan.

    A tool's decorator returns the function itself, so `from pkg.plugins.builtin import echo;
    await echo(inp, ctx)` runs a tool without the ToolRunner: to see it, a module's imports are
    looked up in the modules they name. Absolute imports are found under the nearest directory
    above the importing file named like the import's first part (`jobwarden`), relative ones
    beside it; a module not found there (the standard library, another project) declares none.
    """

    def __init__(self) -> None:
        self._declared: dict[Path, frozenset[str]] = {}
        self._files: dict[tuple[Path, tuple[str, ...], int], Path | None] = {}

    def declared_by(self, importer: Path, parts: list[str], level: int) -> frozenset[str]:
        """What the module `parts` (`level` dots) imported from `importer` declares."""
        key = importer.parent, tuple(parts), level
        if key not in self._files:
            self._files[key] = self.module_file(importer, parts, level)
        module = self._files[key]
        return frozenset() if module is None else self.declared(module)

    def declared(self, module: Path) -> frozenset[str]:
        """The module-level functions the module at `module` (a .py file) declares plugin code."""
        if (names := self._declared.get(module)) is None:
            try:
                source = module.read_bytes()
                # Most modules declare nothing: only one with a declaring decorator is parsed.
                if _DECLARING.search(source) is None:
                    source = b""
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tree = ast.parse(source)
            except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
                # Not a module to import, or one scanned (and reported) on its own.
                tree = ast.Module(body=[], type_ignores=[])
            names = frozenset(node.name for node in tree.body if declared_plugin_code(node))
            self._declared[module] = names
        return names

    @staticmethod
    def module_file(importer: Path, parts: list[str], level: int) -> Path | None:
        """The file of module `parts` imported from `importer` (`level` dots), if one exists."""
        if not parts and not level:
            return None
        base: Path | None
        if level:
            above = importer.absolute().parents
            if level > len(above):
                return None
            base = above[level - 1]
        else:
            base = next(
                (up.parent for up in importer.absolute().parents if up.name == parts[0]), None
            )
            if base is None:
                return None
        where = base.joinpath(*parts)
        for candidate in (where.with_suffix(".py"), where / "__init__.py"):
            if candidate.is_file():
                return candidate
        return None
