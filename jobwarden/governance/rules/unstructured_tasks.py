"""JW006: no task spawned outside a task group."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator

from jobwarden.governance.findings import Finding
from jobwarden.governance.rules.names import Names
from jobwarden.governance.rules.source import Source
from jobwarden.governance.rules.syntax import assignment_of, label_of

_SPAWNERS = frozenset(
    {
        f"asyncio.{module}{name}"
        for module in ("", "tasks.")
        for name in ("create_task", "ensure_future", "Task")
    }
    | {"asyncio.run_coroutine_threadsafe", "asyncio.tasks.run_coroutine_threadsafe"}
)
_LOOP_GETTERS = frozenset({"asyncio.get_event_loop", "asyncio.get_running_loop"})


def _spawns_task(callee: ast.expr, names: Names, loops: frozenset[str]) -> bool:
    match callee:
        case ast.Attribute(attr="create_task", value=ast.Call(func=getter)):
            return bool(names.resolve(getter) & _LOOP_GETTERS)
        case ast.Attribute(attr="create_task", value=receiver) if label_of(
            receiver
        ).lower().endswith("loop") or (isinstance(receiver, ast.Name) and receiver.id in loops):
            return True
    return bool(names.resolve(callee) & _SPAWNERS)


def _loop_names(nodes: Iterable[ast.AST], names: Names) -> frozenset[str]:
    """Names bound to an event loop: `ev = asyncio.get_running_loop()`."""
    found: set[str] = set()
    for node in nodes:
        match assignment_of(node):
            case targets, ast.Call(func=getter) if names.resolve(getter) & _LOOP_GETTERS:
                found.update(label_of(target) for target in targets)
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
