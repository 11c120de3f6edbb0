"""What a module's names are bound to: the dotted names they stand for, and what imports bind."""

from __future__ import annotations

import ast
from collections.abc import Iterable

from jobwarden.governance.rules.syntax import assignment_of


class Names:
    """The dotted names a module's names may stand for: `import time as clock`, `from time
    import sleep`, `from time import *`, builtins (`print`), and aliases of any of those
    (`nap = time.sleep`). A name may stand for several (a star import may or may not bind it,
    an alias may be reassigned): each is a candidate, erring on the side of reporting.
    """

    def __init__(self, nodes: Iterable[ast.AST]) -> None:
        nodes = list(nodes)
        self._bound: dict[str, frozenset[str]] = {}
        self._stars: list[str] = []
        for node in nodes:
            match node:
                case ast.Import(names=aliases):
                    for alias in aliases:
                        local = alias.asname or alias.name.partition(".")[0]
                        self._add(local, {alias.name if alias.asname else local})
                case ast.ImportFrom(module=str() as module, names=aliases, level=0):
                    for alias in aliases:
                        if alias.name == "*":
                            self._stars.append(module)
                        else:
                            self._add(alias.asname or alias.name, {f"{module}.{alias.name}"})
        assigned = [
            (target.id, value)
            for node in nodes
            if (assignment := assignment_of(node)) is not None
            for target in assignment[0]
            if isinstance(target, ast.Name) and (value := assignment[1]) is not None
        ]
        # Twice: an alias of an alias (`spawn = create = asyncio.create_task` reads in order).
        for _ in range(2):
            for name, value in assigned:
                if isinstance(value, ast.Name | ast.Attribute) and (found := self.resolve(value)):
                    self._add(name, found)

    def _add(self, name: str, dotted: Iterable[str]) -> None:
        self._bound[name] = self._bound.get(name, frozenset()) | frozenset(dotted)

    def resolve(self, expr: ast.expr) -> frozenset[str]:
        """The dotted names `name` or `name.attr...` may refer to; empty for other expressions."""
        attrs: list[str] = []
        while isinstance(expr, ast.Attribute):
            attrs.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return frozenset()
        name = expr.id
        if name in self._bound:
            roots = self._bound[name]
        else:
            roots = frozenset({f"builtins.{name}", *(f"{star}.{name}" for star in self._stars)})
        suffix = "".join(f".{attr}" for attr in reversed(attrs))
        return frozenset(root + suffix for root in roots)


def import_bindings(nodes: Iterable[ast.AST]) -> dict[str, tuple[int, list[str]]]:
    """Map each name an import binds to the dots before it and the dotted name it stands for."""
    bound: dict[str, tuple[int, list[str]]] = {}
    for node in nodes:
        match node:
            case ast.Import(names=aliases):
                for alias in aliases:
                    if alias.asname:
                        bound[alias.asname] = 0, alias.name.split(".")
                    else:
                        first = alias.name.partition(".")[0]
                        bound[first] = 0, [first]
            case ast.ImportFrom(module=module, names=aliases, level=level):
                package = module.split(".") if module else []
                for alias in aliases:
                    if alias.name != "*":
                        bound[alias.asname or alias.name] = level, [*package, alias.name]
    return bound
