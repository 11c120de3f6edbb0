"""JW004: execution outcomes (success, error) are not plugin lifecycle states."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from jobwarden.governance.findings import Finding
from jobwarden.governance.rules.source import Source
from jobwarden.governance.rules.syntax import assignment_of, label_of, string_constants

_OUTCOME_WORDS = frozenset({"success", "succeeded", "ok", "error", "errored", "failure"})


def _outcomes(expr: ast.expr | None) -> Iterator[tuple[ast.expr, str]]:
    for constant, text in string_constants(expr):
        if text.lower() in _OUTCOME_WORDS:
            yield constant, text


def _lifecycle_outcomes(node: ast.AST, members: set[ast.stmt]) -> Iterator[tuple[ast.expr, str]]:
    """Yield each outcome word `node` uses as a lifecycle state, with where it stands."""
    if (assignment := assignment_of(node)) is not None:
        targets, assigned = assignment
        if node in members:
            for target in targets:
                if label_of(target).lower() in _OUTCOME_WORDS:
                    yield target, label_of(target)
        if node in members or any("lifecycle" in label_of(target).lower() for target in targets):
            yield from _outcomes(assigned)
    match node:
        case ast.keyword(arg=str() as name, value=value) if "lifecycle" in name.lower():
            yield from _outcomes(value)
        case ast.Call(func=callee, args=args, keywords=keywords) if (
            label_of(callee) == "set_lifecycle"
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
