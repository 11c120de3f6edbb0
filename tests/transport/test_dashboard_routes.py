"""The dashboard's routes over HTTP: the page and its assets, their headers, and what is refused."""

from __future__ import annotations

import re

import pytest

from jobwarden.transport.dashboard import ASSETS
from tests.transport.conftest import expect_error, serve

pytestmark = pytest.mark.anyio

SCRIPTS = sorted(name for name in ASSETS if name.endswith(".js"))


async def test_page_is_served_without_a_key_as_html() -> None:
    """GET / answers UTF-8 HTML with no-cache, an ETag and a strict CSP, on a keyed server too."""
    async with serve() as server, server.http.get(server.url("/")) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert resp.charset == "utf-8"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["ETag"]
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert 'src="dashboard/app.js"' in await resp.text()


@pytest.mark.parametrize(
    ("name", "content_type"), [("app.css", "text/css"), *[(n, "text/javascript") for n in SCRIPTS]]
)
async def test_assets_have_their_content_types(name: str, content_type: str) -> None:
    """Each shipped script and style sheet is served with its own content type."""
    async with serve() as server, server.http.get(server.url(f"/dashboard/{name}")) as resp:
        assert resp.status == 200
        assert resp.content_type == content_type
        assert await resp.read() == ASSETS[name].body


async def test_matching_etag_answers_304() -> None:
    """A revalidation with the current ETag (or *) answers 304 with no body; a stale one, 200."""
    async with serve() as server:
        async with server.http.get(server.url("/dashboard/app.js")) as first:
            etag = first.headers["ETag"]
        headers = {"If-None-Match": etag}
        async with server.http.get(server.url("/dashboard/app.js"), headers=headers) as again:
            assert again.status == 304
            assert await again.read() == b""
            assert again.headers["ETag"] == etag
        headers = {"If-None-Match": "*"}
        async with server.http.get(server.url("/"), headers=headers) as star:
            assert star.status == 304
        headers = {"If-None-Match": '"stale"'}
        async with server.http.get(server.url("/dashboard/app.js"), headers=headers) as stale:
            assert stale.status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/nope.js",
        "/dashboard/index.html",
        "/dashboard/..%2F__init__.py",
        "/dashboard/%2e%2e%2fdashboard.py",
        "/dashboard/..%2F..%2F..%2Fpyproject.toml",
        "/dashboard/app.js%00.css",
    ],
)
async def test_unknown_asset_is_404_envelope(path: str) -> None:
    """Any name that is not a shipped asset, traversal attempts included, answers 404 not_found."""
    async with serve() as server, server.http.get(server.url(path)) as resp:
        await expect_error(resp, 404, "not_found")


async def test_a_dotted_path_never_leaves_the_asset_folder() -> None:
    """A literal ../ in the path is normalised away and never reaches a file outside the folder."""
    async with serve() as server:
        url = server.url("/dashboard/../transport/dashboard.py")
        async with server.http.get(url) as resp:
            assert resp.status == 404
            assert b"ASSETS" not in await resp.read()


def test_every_file_the_page_loads_is_shipped() -> None:
    """Each script and style sheet index.html names, and each module a script imports, is an
    asset: the page needs nothing from outside the package."""
    page = ASSETS["index.html"].body.decode()
    named = set(re.findall(r'(?:src|href)="dashboard/([^"]+)"', page))
    for name in SCRIPTS:
        named |= set(re.findall(r'from "\./([^"]+)"', ASSETS[name].body.decode()))
    assert named
    assert named <= set(ASSETS)
    assert "http" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', page))


async def test_the_document_names_exactly_the_assets_served() -> None:
    """/openapi.json lists the asset names as the path parameter's enum, and each one is served."""
    async with serve() as server:
        async with server.http.get(server.url("/openapi.json")) as resp:
            spec = await resp.json()
        [parameter] = spec["paths"]["/dashboard/{name}"]["get"]["parameters"]
        names = parameter["schema"]["enum"]
        assert names == sorted(set(ASSETS) - {"index.html"})
        for name in names:
            async with server.http.get(server.url(f"/dashboard/{name}")) as resp:
                assert resp.status == 200, name
