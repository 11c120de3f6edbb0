"""The governance rules: what jobwarden's code must never do, each checked on one module's AST.

Every check takes a parsed `Source` and yields `Finding`s. The checks are syntactic on purpose:
they read names, not types, so they stay fast, dependency-free and predictable. Code that trips
a rule legitimately is renamed or restructured; there is no suppression comment.

The checks read AST nodes through `match` patterns rather than `call.func`: this module is
scanned too, and JW001 treats any `x.func` read as plugin code.
"""

from __future__ import annotations

import ast
import os
import re
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeGuard

from jobwarden.governance.findings import Finding, shown_path

ALLOWED_PLUGIN_CALLERS: tuple[str, ...] = (
    "jobwarden/actors/tool_runner.py",
    "jobwarden/actors/process_worker.py",
    # Plugin startup/shutdown hooks are not tool calls: no job, input or deadline of a job's
    # own, so they run beside the ToolRunner, each recorded by the registry's record_hook.
    "jobwarden/actors/plugin_hooks.py",
)
# Registry calls that account for a plugin call in a finally: a tool's execution, a hook's end.
_RECORDERS = frozenset({"record_execution", "record_hook"})

RULES: Mapping[str, str] = {
    "JW000": "file cannot be parsed, or is nested too deeply to check",
    "JW001": "plugin code called outside the allow-list",
    "JW002": "plugin call not reached only under a try whose finally records its outcome",
    "JW003": 'hard-coded "default" tool name',
    "JW004": "success/error used as a plugin lifecycle state",
    "JW005": "bare except, or except BaseException or cancellation, without re-raise",
    "JW006": "task spawned outside a task group",
    "JW007": "time.sleep inside async def",
    "JW008": "print() call",
    "JW009": "aiohttp application or server without the error-envelope middleware",
}

# Attributes holding plugin code: a tool's function and the plugin lifecycle hooks.
_PLUGIN_ATTRS = frozenset({"func", "startup_hook", "shutdown_hook"})
# Attributes of plugin code that describe it without running it.
_DESCRIPTIVE = frozenset({"__name__", "__qualname__", "__module__", "__doc__", "__annotations__"})
_QUALIFIED_DEFAULT = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\.default")
_OUTCOME_WORDS = frozenset({"success", "succeeded", "ok", "error", "errored", "failure"})
# Cancellation classes caught by name: asyncio's (and concurrent.futures'), trio's.
_CANCELLATION = frozenset({"BaseException", "CancelledError", "Cancelled"})
_SPAWNERS = frozenset(
    {
        f"asyncio.{module}{name}"
        for module in ("", "tasks.")
        for name in ("create_task", "ensure_future", "Task")
    }
    | {"asyncio.run_coroutine_threadsafe", "asyncio.tasks.run_coroutine_threadsafe"}
)
_LOOP_GETTERS = frozenset({"asyncio.get_event_loop", "asyncio.get_running_loop"})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


# Decorators (`@plugin.tool(...)`, `@plugin.on_startup`) that declare a function plugin code.
_DECLARERS = frozenset({"tool", "on_startup", "on_shutdown"})


# A prefilter that no declaring decorator escapes, however it is spread over lines: an @, then
# `.tool` (or a hook declarer) before the next @.
_DECLARING = re.compile(rb"@[^@]*?\.\s*(?:tool|on_startup|on_shutdown)\b")


def _declared_plugin_code(node: ast.AST) -> TypeGuard[ast.FunctionDef | ast.AsyncFunctionDef]:
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
            names = frozenset(node.name for node in tree.body if _declared_plugin_code(node))
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
    def names(self) -> _Names:
        return _Names(self.nodes)

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


def _walk_local(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Yield `nodes` and their descendants, without entering nested functions or classes."""
    stack = [node for node in nodes if not isinstance(node, _SCOPES)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, _SCOPES))


def _label(expr: ast.expr | None) -> str:
    """The name a value is stored under or read from: `x`, `obj.x` or `obj["x"]`; else ""."""
    match expr:
        case (
            ast.Name(id=name)
            | ast.Attribute(attr=name)
            | ast.Subscript(slice=ast.Constant(value=str() as name))
        ):
            return name
    return ""


def _string_constants(expr: ast.expr | None) -> Iterator[tuple[ast.Constant, str]]:
    """Yield the string constants `expr` may evaluate to, list, or admit as a `Literal[...]`.

    A loop rather than recursion: a chain of a thousand conditionals parses, and must not
    overflow the stack of the check reading it.
    """
    stack = [expr]
    while stack:
        match stack.pop():
            case ast.Constant(value=str() as text) as constant:
                yield constant, text
            case (
                ast.BoolOp(values=parts)
                | ast.Tuple(elts=parts)
                | ast.List(elts=parts)
                | ast.Set(elts=parts)
            ):
                stack.extend(reversed(parts))
            case ast.IfExp(body=body, orelse=orelse):
                stack.extend((orelse, body))
            case ast.Subscript(value=ast.Name(id="Literal") | ast.Attribute(attr="Literal")) as sub:
                stack.append(sub.slice)


def _assignment(node: ast.AST) -> tuple[list[ast.expr], ast.expr | None] | None:
    """The targets and value of an assignment statement, or None for any other node."""
    match node:
        case ast.Assign(targets=targets, value=value):
            return targets, value
        case ast.AnnAssign(target=target, value=value):
            return [target], value
    return None


class _Names:
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
            if (assignment := _assignment(node)) is not None
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
        case ast.Call(func=getter, args=names) if _label(getter) == "attrgetter":
            return any(
                isinstance(name, ast.Constant) and name.value in _PLUGIN_ATTRS for name in names
            )
        case ast.Call(func=caller, args=[ast.Constant(value=str() as attr), *_]) if (
            _label(caller) == "methodcaller"
        ):
            return attr in _PLUGIN_ATTRS
    return False


# How plugin code is let go of where it runs, or is handed to what runs it, at that very place.
_RUNS_THERE = frozenset({"called", "passed to a call", "awaited", "entered"})


# Where a value goes, from the node holding it to the node above: `_Flow` follows plugin code.
_Path = tuple[int, ...]  # where in nested tuple and list displays it sits; () for the value itself


class _Flow:
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
            scope = parent if isinstance(parent, _SCOPES) else self._scope_of.get(parent, src.tree)
            self._scope_of[node] = scope
            if isinstance(node, _SCOPES):
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
            elif _declared_plugin_code(node):
                self._taint(self._scope_of[node], node.name, ())
        self._imported_plugin_code(src)
        while self._pending:
            self._follow(*self._pending.pop())

    def _imported_plugin_code(self, src: Source) -> None:
        """Hold each name or dotted name that reads a function another module declares plugin
        code: `echo` after `from .builtin import echo`, `builtin.echo` after `from . import
        builtin` or `import pkg.plugins.builtin as builtin`."""
        imported = _imports(src.nodes)
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


def _imports(nodes: Iterable[ast.AST]) -> dict[str, tuple[int, list[str]]]:
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


def plugin_code_outside_allow_list(src: Source) -> Iterator[Finding]:
    """JW001: only the ToolRunner may call plugin code.

    The ToolRunner is the one choke point that validates, times out, cancels, wraps failures in
    an error envelope and records metrics; a plugin called from anywhere else skips all of it.
    Handing `tool.func` to a thread runner or `functools.partial` is calling it by proxy, and
    binding it to a name, a dict or a tuple first, or returning it, only defers the call: `_Flow`
    follows it. A function declared a tool or a hook (`@plugin.tool(...)`, `@plugin.on_startup`)
    is plugin code too, in its module and wherever it is imported: tools share code through a
    plain helper, not by calling one another. `getattr(tool, name)` with a computed name, and
    a function resolved from a string (`pkgutil.resolve_name`), cannot be followed.
    """
    if src.allows_plugin_calls:
        return
    for ref, how in _Flow(src).uses:
        yield src.finding(
            ref, "JW001", f"plugin code `{ast.unparse(ref)}` {how} outside the ToolRunner"
        )


def _records_metrics(statements: list[ast.stmt]) -> bool:
    """Whether `statements` (a finally) always call a recorder: at their top level, or at the
    top of a `with` or a `try` body there, before any return, raise, break or continue. A
    recorder under an `if` or in a loop records only some calls, so it does not count."""
    for statement in statements:
        match statement:
            case (
                ast.Expr(value=value)
                | ast.Assign(value=value)
                | ast.AnnAssign(value=value)
                | ast.Return(value=value)
            ) if _is_recorder_call(value):
                return True
            case ast.With(body=body) | ast.AsyncWith(body=body) | ast.Try(body=body) if (
                _records_metrics(body)
            ):
                return True
            case ast.Return() | ast.Raise() | ast.Break() | ast.Continue():
                return False
    return False


def _is_recorder_call(expr: ast.expr | None) -> bool:
    match expr:
        case (
            ast.Await(value=ast.Call(func=ast.Attribute(attr=attr)))
            | ast.Call(func=ast.Attribute(attr=attr))
        ):
            return attr in _RECORDERS
    return False


def _in_finally(node: ast.AST, parents: Mapping[ast.AST, ast.AST]) -> bool:
    """Whether `node` is in the finally of a try in its own function."""
    child = node
    while (parent := parents.get(child)) is not None and not isinstance(parent, _SCOPES):
        if isinstance(parent, ast.Try | ast.TryStar) and child in parent.finalbody:
            return True
        child = parent
    return False


# What decides whether code in a function or lambda is guarded: its callers, by this name.
_Callable = tuple[ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, str]


class _Reach:
    """Whether code in a module only ever runs under a try whose finally records metrics."""

    def __init__(self, src: Source) -> None:
        self._parents = src.parents
        self._callers: defaultdict[str, list[ast.Call]] = defaultdict(list)
        for node in src.nodes:
            match node:
                case (
                    ast.Call(func=ast.Name(id=name))
                    | ast.Call(func=ast.Attribute(value=ast.Name(id="self" | "cls"), attr=name))
                ):
                    self._callers[name].append(node)
        self._verdicts: dict[_Callable, bool] = {}

    def _local(self, node: ast.AST) -> bool | _Callable:
        """True if a try around `node` records in its finally; else the function (or lambda
        bound to a name) whose callers decide, the innermost around `node`; else False.

        A try counts when `node` is in its body, handlers or else clause (its finally runs after
        all three). A function or lambda defined in such a try runs when it is called, maybe
        after the finally: its calls decide. A lambda passed straight to a call is judged where
        that call is, as plugin code passed to a call is; one stored any other way is not
        guarded.
        """
        child = node
        while (parent := self._parents.get(child)) is not None:
            match parent:
                case ast.Try() | ast.TryStar() if (
                    child not in parent.finalbody and _records_metrics(parent.finalbody)
                ):
                    return True
                case ast.FunctionDef() | ast.AsyncFunctionDef():
                    return parent, parent.name
                case ast.Lambda():
                    match self._parents.get(parent):
                        case ast.Call() | ast.keyword():
                            pass
                        case (
                            ast.Assign(targets=[ast.Name(id=name)])
                            | ast.AnnAssign(target=ast.Name(id=name))
                        ):
                            return parent, name
                        case _:
                            return False
            child = parent
        return False

    def guarded(self, node: ast.AST) -> bool:
        """Whether every way to `node` passes such a try, and there is at least one way.

        Outside such a try, the ways in are the calls of the enclosing function in this module,
        and theirs in turn: `node` is guarded when, among everything those calls reach, some
        call is under such a try and none is at module level or in a function nobody calls. A
        recursive call adds no new way in. Each function is judged once, with a walk over the
        functions that call it: a chain of helpers each calling the next twice must not cost
        one visit per path.
        """
        local = self._local(node)
        if isinstance(local, bool):
            return local
        if (verdict := self._verdicts.get(local)) is None:
            verdict = self._verdicts[local] = self._function_guarded(local)
        return verdict

    def _function_guarded(self, function: _Callable) -> bool:
        seen = {function}
        pending = [function]
        some_guarded = False
        while pending:
            calls = self._callers.get(pending.pop()[1], [])
            if not calls:
                return False
            for call in calls:
                local = self._local(call)
                if local is False:
                    return False
                if local is True:
                    some_guarded = True
                elif not isinstance(local, bool) and local not in seen:
                    seen.add(local)
                    pending.append(local)
        return some_guarded


def plugin_call_without_metrics(src: Source) -> Iterator[Finding]:
    """JW002: every plugin call in the ToolRunner is accounted for in the plugin's metrics.

    Recording in a `finally` is what makes success, failure, timeout and cancellation all count;
    a call path that skips it makes the per-plugin health figures lie. Plugin code returned,
    stored on an object or otherwise let go of may run anywhere later, so it is reported even
    inside such a try. The figures lie as well when a recorder is called anywhere else: outside
    a finally (it counts some outcomes only, or counts one twice), or outside the modules
    that call plugin code (it counts executions that never happened).
    """
    for node in src.nodes:
        if isinstance(node, ast.Call) and _is_recorder_call(node):
            if src.allows_plugin_calls and _in_finally(node, src.parents):
                continue
            where = "a finally" if src.allows_plugin_calls else "the ToolRunner"
            yield src.finding(
                node, "JW002", f"`{ast.unparse(node)}` records a plugin execution outside {where}"
            )
    if not src.allows_plugin_calls:
        return
    flow = _Flow(src)
    reach = _Reach(src)
    for ref, how in flow.uses:
        if how not in _RUNS_THERE:
            yield src.finding(
                ref,
                "JW002",
                f"plugin code `{ast.unparse(ref)}` {how}: it can run outside a try whose"
                " finally calls record_execution (or record_hook)",
            )
        elif not reach.guarded(ref):
            yield src.finding(
                ref,
                "JW002",
                f"plugin call `{ast.unparse(ref)}` can run outside a try whose finally"
                " calls record_execution (or record_hook)",
            )


def _tool_key(expr: ast.expr | None) -> bool:
    match expr:
        case ast.Constant(value=str() as key):
            return "tool" in key.lower()
    return False


def _looks_up_a_tool(callee: ast.expr) -> bool:
    """Whether a call to `callee` takes a tool name first: `registry.tool(name)`, `get_tool`,
    `sup.submit(name, ...)`, `sup.run(name, ...)`, `tools.get(name)`."""
    match callee:
        case ast.Attribute(attr="get" | "pop" | "setdefault" | "__getitem__", value=receiver):
            return "tool" in _label(receiver).lower()
    label = _label(callee)
    return "tool" in label.lower() or label in {"submit", "run"}


def _tool_name_sources(node: ast.AST) -> Iterator[ast.expr]:
    """Yield the expressions through which `node` supplies or tests a tool name."""
    if (assignment := _assignment(node)) is not None:
        targets, assigned = assignment
        if assigned is not None and any("tool" in _label(target).lower() for target in targets):
            yield assigned
    match node:
        case ast.keyword(arg=str() as name, value=value) if "tool" in name.lower():
            yield value
        case ast.arguments(
            posonlyargs=posonly, args=args, defaults=defaults, kwonlyargs=kwonly, kw_defaults=kw
        ):
            positional = [*posonly, *args]
            pairs = [
                *zip(positional[len(positional) - len(defaults) :], defaults, strict=True),
                *zip(kwonly, kw, strict=True),
            ]
            for param, default in pairs:
                if default is not None and "tool" in param.arg.lower():
                    yield default
        case ast.Compare(left=left, ops=ops, comparators=comparators) if any(
            isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in ops
        ):
            operands = [left, *comparators]
            if any("tool" in _label(operand).lower() for operand in operands):
                yield from operands
        case ast.Dict(keys=keys, values=values):
            yield from (value for key, value in zip(keys, values, strict=True) if _tool_key(key))
        case ast.Subscript(value=container, slice=key) if "tool" in _label(container).lower():
            yield key  # plugin.tools["default"]
        case ast.Match(subject=subject, cases=cases) if "tool" in _label(subject).lower():
            for case in cases:
                for pattern in ast.walk(case.pattern):
                    if isinstance(pattern, ast.MatchValue):
                        yield pattern.value
    match node:
        case ast.Call(
            func=ast.Attribute(attr="get" | "pop" | "setdefault"), args=[key, fallback, *_]
        ) if _tool_key(key):
            yield fallback
        case ast.Call(func=callee, args=[first, *_]) if _looks_up_a_tool(callee):
            yield first


def hard_coded_default_tool(src: Source) -> Iterator[Finding]:
    """JW003: a tool is named explicitly or is the plugin's first declared tool, never "default".

    A literal "default" silently routes requests to a tool that may not exist, which is exactly
    how the seed server's analyze-execution routes broke. The rule reads names: it looks where
    a name or key mentions a tool (`tool_name = ...`, `tool=...`, `body.get("tool", ...)`,
    `plugin.tools[...]`, `registry.tool(...)`, `match tool:`), at the first argument of
    `submit` and `run`, and at every string shaped `<plugin>.default`.
    """
    message = 'hard-coded "default" tool name; name the tool or use the first declared'
    for node in src.nodes:
        for expr in _tool_name_sources(node):
            for constant, text in _string_constants(expr):
                if text == "default":
                    yield src.finding(constant, "JW003", message)
        # A full tool name is `plugin.tool`: "demo.default" or f"{plugin}.default" anywhere.
        match node:
            case ast.Constant(value=str() as text) if _QUALIFIED_DEFAULT.fullmatch(text):
                yield src.finding(node, "JW003", message)
            case ast.JoinedStr(values=[*_, ast.FormattedValue(), ast.Constant(value=".default")]):
                yield src.finding(node, "JW003", message)


def _outcomes(expr: ast.expr | None) -> Iterator[tuple[ast.expr, str]]:
    for constant, text in _string_constants(expr):
        if text.lower() in _OUTCOME_WORDS:
            yield constant, text


def _lifecycle_outcomes(node: ast.AST, members: set[ast.stmt]) -> Iterator[tuple[ast.expr, str]]:
    """Yield each outcome word `node` uses as a lifecycle state, with where it stands."""
    if (assignment := _assignment(node)) is not None:
        targets, assigned = assignment
        if node in members:
            for target in targets:
                if _label(target).lower() in _OUTCOME_WORDS:
                    yield target, _label(target)
        if node in members or any("lifecycle" in _label(target).lower() for target in targets):
            yield from _outcomes(assigned)
    match node:
        case ast.keyword(arg=str() as name, value=value) if "lifecycle" in name.lower():
            yield from _outcomes(value)
        case ast.Call(func=callee, args=args, keywords=keywords) if (
            _label(callee) == "set_lifecycle"
        ):
            for expr in (*args, *(keyword.value for keyword in keywords if keyword.arg == "state")):
                yield from _outcomes(expr)


def outcome_as_lifecycle_state(src: Source) -> Iterator[Finding]:
    """JW004: a plugin's lifecycle is loaded, initialized, running, failed or unavailable.

    Success and error describe one execution, and live in the metrics; a plugin whose lifecycle
    says "error" conflates one bad call with a broken plugin, and health checks stop meaning much.
    """
    members = {
        statement
        for node in src.nodes
        if isinstance(node, ast.ClassDef) and "lifecycle" in node.name.lower()
        for statement in node.body
    }
    for node in src.nodes:
        # One finding per statement or argument, even where name and value are both wrong.
        culprit = next(_lifecycle_outcomes(node, members), None)
        if culprit is not None:
            expr, word = culprit
            yield src.finding(
                expr,
                "JW004",
                f'"{word}" is an execution outcome, not a plugin lifecycle state'
                " (loaded, initialized, running, failed, unavailable)",
            )


def _cancelled_aliases(nodes: Iterable[ast.AST]) -> frozenset[str]:
    """Names bound to anyio's cancellation class: `cancelled = anyio.get_cancelled_exc_class()`."""
    return frozenset(
        _label(target)
        for node in nodes
        if (assignment := _assignment(node)) is not None and _is_cancelled_class_call(assignment[1])
        for target in assignment[0]
    )


def _is_cancelled_class_call(expr: ast.expr | None) -> bool:
    match expr:
        case ast.Call(func=getter):
            return _label(getter) == "get_cancelled_exc_class"
    return False


def _catches_cancellation(caught: ast.expr | None, aliases: frozenset[str]) -> bool:
    """Whether an `except` of `caught` (None: bare) catches cancellation."""
    match caught:
        case None:
            return True
        case ast.Tuple(elts=elts):
            return any(_catches_cancellation(elt, aliases) for elt in elts)
    return (
        _label(caught) in _CANCELLATION or _label(caught) in aliases
    ) or _is_cancelled_class_call(caught)


def _reraises(handler: ast.ExceptHandler) -> bool:
    """True if the handler re-raises, or forwards the exception with ``<coroutine>.throw(exc)``."""
    for node in _walk_local(handler.body):
        match node:
            case ast.Raise(exc=None) | ast.Raise(cause=ast.expr()):
                return True
            case ast.Call(func=ast.Attribute(attr="throw"), args=[ast.Name(id=name), *_]) if (
                name == handler.name
            ):
                return True
    return False


def swallowed_base_exception(src: Source) -> Iterator[Finding]:
    """JW005: cancellation and interrupts are BaseExceptions and must keep propagating.

    asyncio's CancelledError, trio's Cancelled, KeyboardInterrupt and SystemExit all bypass
    `except Exception`; catching them without re-raising breaks cancel scopes, timeouts and
    shutdown. A bare `except:`, `except BaseException` and an `except` naming a cancellation
    class (`CancelledError`, `Cancelled`, anyio's `get_cancelled_exc_class()` or a name bound
    to it) get that treatment, and so does `contextlib.suppress` of any of them, which swallows
    without an `except` to see. KeyboardInterrupt and SystemExit caught by name are left alone:
    a command line ends on them with its own exit code.
    """
    aliases = _cancelled_aliases(src.nodes)
    for node in src.nodes:
        match node:
            case ast.ExceptHandler(type=caught) if not _reraises(node) and _catches_cancellation(
                caught, aliases
            ):
                shown = "" if caught is None else f" {ast.unparse(caught)}"
                yield src.finding(
                    node, "JW005", f"`except{shown}:` without re-raise swallows cancellation"
                )
            case ast.Call(func=callee, args=args) if _label(callee) == "suppress" and any(
                _catches_cancellation(arg, aliases) for arg in args
            ):
                yield src.finding(node, "JW005", f"`{ast.unparse(node)}` swallows cancellation")


def _spawns_task(callee: ast.expr, names: _Names, loops: frozenset[str]) -> bool:
    match callee:
        case ast.Attribute(attr="create_task", value=ast.Call(func=getter)):
            return bool(names.resolve(getter) & _LOOP_GETTERS)
        case ast.Attribute(attr="create_task", value=receiver) if _label(receiver).lower().endswith(
            "loop"
        ) or (isinstance(receiver, ast.Name) and receiver.id in loops):
            return True
    return bool(names.resolve(callee) & _SPAWNERS)


def _loop_names(nodes: Iterable[ast.AST], names: _Names) -> frozenset[str]:
    """Names bound to an event loop: `ev = asyncio.get_running_loop()`."""
    found: set[str] = set()
    for node in nodes:
        match _assignment(node):
            case targets, ast.Call(func=getter) if names.resolve(getter) & _LOOP_GETTERS:
                found.update(_label(target) for target in targets)
    return frozenset(found)


def unstructured_task(src: Source) -> Iterator[Finding]:
    """JW006: every task lives in a task group.

    A free-floating task outlives its caller, loses its exceptions and escapes cancellation;
    task groups make lifetimes nest, which is what makes supervision and shutdown correct.
    `asyncio.Task(...)` and `asyncio.run_coroutine_threadsafe` make one too. trio's
    `spawn_system_task` is left alone: its tasks live as long as `trio.run`, by design.
    """
    names = src.names
    loops = _loop_names(src.nodes, names)
    for node in src.nodes:
        match node:
            case ast.Call(func=callee) if _spawns_task(callee, names, loops):
                yield src.finding(
                    node,
                    "JW006",
                    f"`{ast.unparse(callee)}` spawns a task outside any task group",
                )


def blocking_sleep_in_async(src: Source) -> Iterator[Finding]:
    """JW007: `time.sleep` in a coroutine stalls every job on the event loop.

    A plain function nested in the coroutine (for example one handed to `anyio.to_thread`) runs
    elsewhere and may block.
    """
    names = src.names
    for node in src.nodes:
        if isinstance(node, ast.AsyncFunctionDef):
            for inner in _walk_local(node.body):
                match inner:
                    case ast.Call(func=callee) if "time.sleep" in names.resolve(callee):
                        yield src.finding(
                            inner,
                            "JW007",
                            "time.sleep blocks the event loop; await anyio.sleep instead",
                        )


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


def _is_print(expr: ast.expr, names: _Names) -> bool:
    match expr:
        case ast.Name(id="print"):
            return True
    return "builtins.print" in names.resolve(expr)


_APPLICATIONS = frozenset({"aiohttp.web.Application", "aiohttp.web_app.Application"})
_LOW_LEVEL_SERVERS = frozenset({"aiohttp.web.Server", "aiohttp.web_server.Server"})


def _passes_envelope_middleware(call: ast.Call) -> bool:
    for keyword in call.keywords:
        match keyword:
            case ast.keyword(arg="middlewares", value=ast.List(elts=elts) | ast.Tuple(elts=elts)):
                return any(_calls(elt, "request_middleware") for elt in elts)
    return False


def _mounted_names(nodes: Iterable[ast.AST]) -> frozenset[str]:
    """Names of applications mounted as sub-applications: `app.add_subapp("/x", sub)`."""
    found: set[str] = set()
    for node in nodes:
        match node:
            case ast.Call(func=callee, args=[_, mounted, *_]) if _label(callee) == "add_subapp":
                found.add(_label(mounted))
    return frozenset(found)


def _calls(expr: ast.AST, name: str) -> bool:
    """Whether `expr` is a call of something named `name`."""
    match expr:
        case ast.Call(func=callee):
            return _label(callee) == name
    return False


def application_without_envelope(src: Source) -> Iterator[Finding]:
    """JW009: every HTTP answer passes the middleware that turns errors into envelopes.

    `request_middleware()` is what keeps a raising handler from answering aiohttp's bare 500
    text (or a traceback): it answers the error envelope, and logs the traceback. So every
    `web.Application` is made with it in `middlewares=[...]` (spelled out there: a list built
    elsewhere, or `**options`, cannot be read), except one mounted with `add_subapp` in the same
    module, whose handlers pass its parent's middlewares. aiohttp's low-level `web.Server`
    takes no middleware at all and is always reported.
    """
    mounted = _mounted_names(src.nodes)
    for node in src.nodes:
        match node:
            case ast.Call(func=callee):
                made = src.names.resolve(callee)
            case _:
                continue
        if made & _LOW_LEVEL_SERVERS:
            yield src.finding(
                node, "JW009", "aiohttp's low-level server answers errors without the envelope"
            )
        elif made & _APPLICATIONS and not _passes_envelope_middleware(node):
            match src.parents.get(node):
                case ast.Assign(targets=[target]) | ast.AnnAssign(target=target) if (
                    _label(target) in mounted
                ):
                    continue
            yield src.finding(
                node,
                "JW009",
                "aiohttp application without middlewares=[request_middleware(), ...]: its"
                " handlers' errors would answer without the error envelope",
            )


CHECKS: tuple[Check, ...] = (
    plugin_code_outside_allow_list,
    plugin_call_without_metrics,
    hard_coded_default_tool,
    outcome_as_lifecycle_state,
    swallowed_base_exception,
    unstructured_task,
    blocking_sleep_in_async,
    print_call,
    application_without_envelope,
)
