"""JW005: cancellation and other BaseExceptions are never swallowed."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator

from jobwarden.governance.findings import Finding
from jobwarden.governance.rules.source import Source
from jobwarden.governance.rules.syntax import assignment_of, label_of, walk_local

# Cancellation classes caught by name: asyncio's (and concurrent.futures'), trio's.
_CANCELLATION = frozenset({"BaseException", "CancelledError", "Cancelled"})


def _cancelled_aliases(nodes: Iterable[ast.AST]) -> frozenset[str]:
    """Names bound to anyio's cancellation class: `cancelled = anyio.get_cancelled_exc_class()`."""
    return frozenset(
        label_of(target)
        for node in nodes
        if (assignment := assignment_of(node)) is not None
        and _is_cancelled_class_call(assignment[1])
        for target in assignment[0]
    )


def _is_cancelled_class_call(expr: ast.expr | None) -> bool:
    match expr:
        case ast.Call(func=getter):
            return label_of(getter) == "get_cancelled_exc_class"
    return False


def _catches_cancellation(caught: ast.expr | None, aliases: frozenset[str]) -> bool:
    """Whether an `except` of `caught` (None: bare) catches cancellation."""
    match caught:
        case None:
            return True
        case ast.Tuple(elts=elts):
            return any(_catches_cancellation(elt, aliases) for elt in elts)
    return (
        label_of(caught) in _CANCELLATION or label_of(caught) in aliases
    ) or _is_cancelled_class_call(caught)


def _reraises(handler: ast.ExceptHandler) -> bool:
    """True if the handler re-raises, or forwards the exception with ``<coroutine>.throw(exc)``."""
    for node in walk_local(handler.body):
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
            case ast.Call(func=callee, args=args) if label_of(callee) == "suppress" and any(
                _catches_cancellation(arg, aliases) for arg in args
            ):
                yield src.finding(node, "JW005", f"`{ast.unparse(node)}` swallows cancellation")
