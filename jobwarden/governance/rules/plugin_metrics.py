"""JW002: every plugin call runs under a try whose finally records it in the plugin's metrics."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator, Mapping

from jobwarden.governance.findings import Finding
from jobwarden.governance.rules.plugin_flow import RUNS_THERE, Flow
from jobwarden.governance.rules.source import Source
from jobwarden.governance.rules.syntax import SCOPES

# Registry calls that account for a plugin call in a finally: a tool's execution, a hook's end.
_RECORDERS = frozenset({"record_execution", "record_hook"})


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
    while (parent := parents.get(child)) is not None and not isinstance(parent, SCOPES):
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
    flow = Flow(src)
    reach = _Reach(src)
    for ref, how in flow.uses:
        if how not in RUNS_THERE:
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
