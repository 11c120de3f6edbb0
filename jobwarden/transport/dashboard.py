"""The live dashboard: ``GET /`` and its static assets, read from the package, no auth.

The page holds no data (it fetches everything with the visitor's key), so it is served open.
Assets are looked up by name in a table built from the package folder at import, so a request
can only ever name one of those files: no path reaches the filesystem.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import msgspec
from aiohttp import web

from jobwarden.transport.responses import ApiError

_CONTENT_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
}
# The page loads only its own files and talks only to its own origin (fetch and websocket).
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class Asset(msgspec.Struct, frozen=True):
    """One shipped file: its bytes, content type and strong ETag value."""

    body: bytes
    content_type: str
    etag: str


def _load_assets() -> dict[str, Asset]:
    folder = resources.files("jobwarden.transport").joinpath("dashboard")
    assets = {}
    for entry in folder.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _CONTENT_TYPES:
            body = entry.read_bytes()
            etag = hashlib.sha256(body).hexdigest()[:32]
            assets[entry.name] = Asset(body, _CONTENT_TYPES[suffix], etag)
    return assets


ASSETS = _load_assets()
INDEX = "index.html"

routes = web.RouteTableDef()


@routes.get("/")
async def index(request: web.Request) -> web.Response:
    """The dashboard page."""
    return _serve(request, INDEX)


@routes.get("/dashboard/{name}")
async def asset(request: web.Request) -> web.Response:
    """One of the page's scripts or style sheets; 404 not_found for any other name."""
    name = request.match_info["name"]
    if name == INDEX or name not in ASSETS:
        raise ApiError(404, "not_found", f"no dashboard asset named {name!r}")
    return _serve(request, name)


def _serve(request: web.Request, name: str) -> web.Response:
    """The asset, revalidated on every load (no-cache + ETag) so an upgrade shows at once."""
    found = ASSETS[name]
    headers = {"Cache-Control": "no-cache", **_SECURITY_HEADERS}
    if any(tag.value in (found.etag, "*") for tag in request.if_none_match or ()):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(
            body=found.body, content_type=found.content_type, charset="utf-8", headers=headers
        )
    response.etag = found.etag
    return response
