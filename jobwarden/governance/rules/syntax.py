"""Readings of AST nodes the rules share: scopes, labels, string constants, assignments."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator

# The nodes whose bodies are scopes of their own.
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def walk_local(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Yield `nodes` and their descendants, without entering nested functions or classes."""
    stack = [node for node in nodes if not isinstance(node, SCOPES)]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(c for c in ast.iter_child_nodes(node) if not isinstance(c, SCOPES))


def label_of(expr: ast.expr | None) -> str:
    """The name a value is stored under or read from: `x`, `obj.x` or `obj["x"]`; else ""."""
    match expr:
        case (
            ast.Name(id=name)
            | ast.Attribute(attr=name)
            | ast.Subscript(slice=ast.Constant(value=str() as name))
        ):
            return name
    return ""


def string_constants(expr: ast.expr | None) -> Iterator[tuple[ast.Constant, str]]:
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


def assignment_of(node: ast.AST) -> tuple[list[ast.expr], ast.expr | None] | None:
    """The targets and value of an assignment statement, or None for any other node."""
    match node:
        case ast.Assign(targets=targets, value=value):
            return targets, value
        case ast.AnnAssign(target=target, value=value):
            return [target], value
    return None
