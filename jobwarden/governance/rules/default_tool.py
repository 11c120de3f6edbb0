"""JW003: no hard-coded "default" tool name."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from jobwarden.governance.findings import Finding
from jobwarden.governance.rules.source import Source
from jobwarden.governance.rules.syntax import assignment_of, label_of, string_constants

_QUALIFIED_DEFAULT = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\.default")


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
            return "tool" in label_of(receiver).lower()
    label = label_of(callee)
    return "tool" in label.lower() or label in {"submit", "run"}


def _tool_name_sources(node: ast.AST) -> Iterator[ast.expr]:
    """Yield the expressions through which `node` supplies or tests a tool name."""
    if (assignment := assignment_of(node)) is not None:
        targets, assigned = assignment
        if assigned is not None and any("tool" in label_of(target).lower() for target in targets):
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
            if any("tool" in label_of(operand).lower() for operand in operands):
                yield from operands
        case ast.Dict(keys=keys, values=values):
            yield from (value for key, value in zip(keys, values, strict=True) if _tool_key(key))
        case ast.Subscript(value=container, slice=key) if "tool" in label_of(container).lower():
            yield key  # plugin.tools["default"]
        case ast.Match(subject=subject, cases=cases) if "tool" in label_of(subject).lower():
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
            for constant, text in string_constants(expr):
                if text == "default":
                    yield src.finding(constant, "JW003", message)
        # A full tool name is `plugin.tool`: "demo.default" or f"{plugin}.default" anywhere.
        match node:
            case ast.Constant(value=str() as text) if _QUALIFIED_DEFAULT.fullmatch(text):
                yield src.finding(node, "JW003", message)
            case ast.JoinedStr(values=[*_, ast.FormattedValue(), ast.Constant(value=".default")]):
                yield src.finding(node, "JW003", message)
