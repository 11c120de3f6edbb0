"""Where plugin code goes in a module: from where it is read to where it runs or is let go of."""

from __future__ import annotations

import ast
from collections import defaultdict

from jobwarden.governance.rules.names import import_bindings
from jobwarden.governance.rules.source import Source
from jobwarden.governance.rules.syntax import SCOPES, label_of
from jobwarden.governance.rules.tool_index import declared_plugin_code

# Attributes holding plugin code: a tool's function and the plugin lifecycle hooks.
_PLUGIN_ATTRS = frozenset({"func", "startup_hook", "shutdown_hook"})
# Attributes of plugin code that describe it without running it.
_DESCRIPTIVE = frozenset({"__name__", "__qualname__", "__module__", "__doc__", "__annotations__"})


def _is_plugin_ref(expr: ast.AST) -> bool:
    """Whether `expr` reads plugin code: `x.func`, `getattr(x, "func")`, `vars(x)["func"]`, or
    is a getter or caller of it, `operator.attrgetter("func")`, `operator.methodcaller("func")`.
    """
    match expr:
        case (
            ast.Attribute(attr=attr, ctx=ast.Load())
            | ast.Call(func=ast.Name(id="getattr"), args=[_, ast.Constant(value=str() as attr), *_])
            | ast.Subscript(slice=ast.Constant(value=str() as attr), ctx=ast.Load())
        ):
            return attr in _PLUGIN_ATTRS
        case ast.Call(func=getter, args=names) if label_of(getter) == "attrgetter":
            return any(
                isinstance(name, ast.Constant) and name.value in _PLUGIN_ATTRS for name in names
            )
        case ast.Call(func=caller, args=[ast.Constant(value=str() as attr), *_]) if (
            label_of(caller) == "methodcaller"
        ):
            return attr in _PLUGIN_ATTRS
    return False


# How plugin code is let go of where it runs, or is handed to what runs it, at that very place.
RUNS_THERE = frozenset({"called", "passed to a call", "awaited", "entered"})


# Where a value goes, from the node holding it to the node above: `Flow` follows plugin code.
_Path = tuple[int, ...]  # where in nested tuple and list displays it sits; () for the value itself


class Flow:
    """Every place in one module where plugin code is run or let go of.

    Plugin code is followed from where it is read (`_is_plugin_ref`) through names it is bound
    to (`f = tool.func`, `for hook in (...)`, `d["run"] = ...`, in the function and in functions
    nested in it), displays and containers (`{"run": tool.func}["run"]`), conditionals, and
    attributes (`tool.func.__call__`). It is let go of when it is called, passed to a call,
    returned, yielded, awaited, entered, stored on an object, or used in any way not known to be
    harmless; harmless are comparing it (`is None`), testing it, formatting it, and reading its
    name, qualified name, module, docstring or annotations.

    Names are matched by spelling within a function and the functions nested in it, ignoring
    reassignment and shadowing: a name once bound to plugin code stays suspect. That errs on
    the side of reporting, as does a plugin attribute read from any object: the rule cannot know
    types, and a false report is fixed by a rename, a missed call not at all.
    """

    def __init__(self, src: Source) -> None:
        self.parents = src.parents
        self._nested: defaultdict[ast.AST, list[ast.AST]] = defaultdict(list)
        self._loads: defaultdict[tuple[ast.AST, str], list[ast.Name]] = defaultdict(list)
        # The function, lambda or class each node is in (the module at the top); the nodes come
        # parents first.
        self._scope_of: dict[ast.AST, ast.AST] = {}
        for node in src.nodes[1:]:
            parent = self.parents[node]
            scope = parent if isinstance(parent, SCOPES) else self._scope_of.get(parent, src.tree)
            self._scope_of[node] = scope
            if isinstance(node, SCOPES):
                self._nested[scope].append(node)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                self._loads[scope, node.id].append(node)
        self._bound: set[tuple[ast.AST, str, _Path]] = set()
        self._seen: set[tuple[ast.AST, _Path]] = set()
        self._pending: list[tuple[ast.AST, _Path]] = []
        self.uses: list[tuple[ast.expr, str]] = []
        for node in src.nodes:
            if _is_plugin_ref(node):
                self._hold(node, ())
            elif declared_plugin_code(node):
                self._taint(self._scope_of[node], node.name, ())
        self._imported_plugin_code(src)
        while self._pending:
            self._follow(*self._pending.pop())

    def _imported_plugin_code(self, src: Source) -> None:
        """Hold each name or dotted name that reads a function another module declares plugin
        code: `echo` after `from .builtin import echo`, `builtin.echo` after `from . import
        builtin` or `import pkg.plugins.builtin as builtin`."""
        imported = import_bindings(src.nodes)
        for (_, name), loads in self._loads.items():
            if name not in imported:
                continue
            level, parts = imported[name]
            for load in loads:
                node: ast.AST = load
                dotted = list(parts)
                while True:
                    if dotted[-1] in src.tools.declared_by(src.path, dotted[:-1], level):
                        self._hold(node, ())
                        break
                    match self.parents.get(node):
                        case ast.Attribute(value=value, attr=attr, ctx=ast.Load()) as above if (
                            value is node
                        ):
                            node = above
                            dotted.append(attr)
                        case _:
                            break

    def _hold(self, node: ast.AST, path: _Path) -> None:
        if (node, path) not in self._seen:
            self._seen.add((node, path))
            self._pending.append((node, path))

    def _let_go(self, node: ast.AST, how: str) -> None:
        if isinstance(node, ast.expr):
            self.uses.append((node, how))

    def _follow(self, node: ast.AST, path: _Path) -> None:
        parent = self.parents.get(node)
        match parent:
            case ast.Attribute(attr=attr, ctx=ast.Load()):
                if attr not in _DESCRIPTIVE:
                    self._hold(parent, ())
            case ast.Attribute() | ast.Subscript(ctx=ast.Store() | ast.Del()):
                pass  # setting or deleting something on it does not run it
            case ast.Call(func=callee):
                self._let_go(node, "called" if callee is node else "passed to a call")
            case ast.keyword():
                self._let_go(node, "passed to a call")
            case ast.Compare() | ast.FormattedValue() | ast.Expr() | ast.Slice():
                pass
            case ast.UnaryOp(op=ast.Not()):
                pass
            case (
                ast.If(test=test)
                | ast.While(test=test)
                | ast.Assert(test=test)
                | ast.IfExp(test=test)
            ) if test is node:
                pass
            case ast.comprehension(ifs=tests) if node in tests:
                pass
            case ast.IfExp() | ast.BoolOp() | ast.NamedExpr():
                if isinstance(parent, ast.NamedExpr):
                    self._bind(parent.target, path)
                self._hold(parent, path)
            case ast.Tuple(elts=elts) | ast.List(elts=elts) if not any(
                isinstance(elt, ast.Starred) for elt in elts
            ):
                at = next(i for i, elt in enumerate(elts) if elt is node)
                self._hold(parent, (at, *path))
            case (
                ast.Tuple()
                | ast.List()
                | ast.Set()
                | ast.Dict()
                | ast.Starred()
                | ast.ListComp()
                | ast.SetComp()
                | ast.GeneratorExp()
                | ast.DictComp()
            ):
                self._hold(parent, ())
            case ast.Subscript(value=value, slice=index) if value is node:
                match path, index:
                    case (first, *rest), ast.Constant(value=int() as at) if at >= 0:
                        if at == first:
                            self._hold(parent, tuple(rest))
                    case _:
                        self._hold(parent, ())
            case ast.Subscript():
                pass  # a lookup keyed by it
            case ast.Assign(targets=targets):
                for target in targets:
                    self._bind(target, path)
            case ast.AnnAssign(target=target):
                self._bind(target, path)
            case (
                ast.For(target=target)
                | ast.AsyncFor(target=target)
                | ast.comprehension(target=target)
            ):
                # Iterating yields the items: the one the path starts at holds the rest.
                self._bind(target, path[1:])
            case ast.Return() | ast.Yield() | ast.YieldFrom() | ast.Lambda():
                self._let_go(node, "returned")
            case ast.Await():
                self._let_go(node, "awaited")
            case ast.withitem():
                self._let_go(node, "entered")
            case _:
                self._let_go(node, "used")

    def _bind(self, target: ast.AST, path: _Path) -> None:
        """Mark the names `target` binds to a value holding plugin code at `path`."""
        match target, path:
            case ast.Name(id=name), _:
                self._taint(self._scope_of[target], name, path)
            case ((ast.Tuple(elts=elts) | ast.List(elts=elts)), (first, *rest)) if first < len(
                elts
            ) and not any(isinstance(elt, ast.Starred) for elt in elts):
                self._bind(elts[first], tuple(rest))
            case ((ast.Tuple(elts=elts) | ast.List(elts=elts)), _):
                for elt in elts:
                    self._bind(elt, ())
            case ast.Starred(value=value), _:
                self._bind(value, ())
            case ast.Subscript(value=ast.Name() as container), _:
                self._bind(container, ())
            case _:
                self._let_go(target, "stored")

    def _taint(self, scope: ast.AST, name: str, path: _Path) -> None:
        if (scope, name, path) in self._bound:
            return
        self._bound.add((scope, name, path))
        scopes = [scope]
        while scopes:
            inner = scopes.pop()
            for load in self._loads.get((inner, name), []):
                self._hold(load, path)
            scopes.extend(self._nested.get(inner, []))
