"""JW009: every aiohttp application answers errors through the error-envelope middleware."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator

from jobwarden.governance.findings import Finding
from jobwarden.governance.rules.source import Source
from jobwarden.governance.rules.syntax import label_of

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
            case ast.Call(func=callee, args=[_, mounted, *_]) if label_of(callee) == "add_subapp":
                found.add(label_of(mounted))
    return frozenset(found)


def _calls(expr: ast.AST, name: str) -> bool:
    """Whether `expr` is a call of something named `name`."""
    match expr:
        case ast.Call(func=callee):
            return label_of(callee) == name
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
                    label_of(target) in mounted
                ):
                    continue
            yield src.finding(
                node,
                "JW009",
                "aiohttp application without middlewares=[request_middleware(), ...]: its"
                " handlers' errors would answer without the error envelope",
            )
