"""API keys, scopes and per-principal isolation, over real sockets."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from jobwarden.transport import ServerSettings
from tests.transport.conftest import (
    KEYS,
    Server,
    auth,
    expect_error,
    receive_json,
    serve,
)

pytestmark = pytest.mark.anyio

SSE = {"Accept": "text/event-stream"}
WS_UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}
IMAGE = {"plugin": "imaging", "image": "aGVsbG8=", "mime_type": "image/png"}


# Every route that needs a key: (method, path, JSON body or None, extra headers).
KEYED_ROUTES: list[tuple[str, str, Any, dict[str, str]]] = [
    ("GET", "/v1/tools", None, {}),
    ("GET", "/v1/tools/builtin.echo", None, {}),
    ("GET", "/v1/plugins", None, {}),
    ("GET", "/v1/plugins/builtin/health", None, {}),
    ("GET", "/v1/plugins/builtin/manifest", None, {}),
    ("POST", "/v1/jobs", {"tool": "builtin.echo", "input": {"text": "x"}}, {}),
    ("GET", "/v1/jobs", None, {}),
    ("GET", "/v1/jobs/{job}", None, {}),
    ("GET", "/v1/jobs/{job}/result", None, {}),
    ("POST", "/v1/jobs/{job}/cancel", None, {}),
    ("DELETE", "/v1/jobs/{job}", None, {}),
    ("GET", "/v1/jobs/{job}/events", None, SSE),
    ("GET", "/v1/events", None, SSE),
    ("GET", "/v1/metrics", None, {}),
    ("POST", "/v1/analyze-execution", IMAGE, {}),
    ("POST", "/v1/analyze-execution/async", IMAGE, {}),
    ("GET", "/v1/analyze-execution/jobs", None, {}),
    ("GET", "/v1/analyze-execution/jobs/{job}", None, {}),
    ("GET", "/v1/analyze-execution/jobs/{job}/result", None, {}),
    ("DELETE", "/v1/analyze-execution/jobs/{job}", None, {}),
]
WRONG_KEYS = [
    {"Authorization": "Bearer not-a-key-at-all"},
    {"Authorization": f"Basic {KEYS['alice']}"},
    {"Authorization": "Bearer "},
    {"X-API-Key": "not-a-key-at-all"},
    {"X-API-Key": KEYS["alice"][:-1]},
    {"X-API-Key": KEYS["alice"].upper()},
]


async def _request(
    srv: Server, method: str, path: str, body: Any, headers: dict[str, str], **kw: Any
) -> aiohttp.ClientResponse:
    return await srv.http.request(method, srv.url(path), json=body, headers=headers, **kw)


@pytest.mark.parametrize(("method", "path", "body", "extra"), KEYED_ROUTES)
async def test_no_key_and_wrong_keys_are_401(
    method: str, path: str, body: Any, extra: dict[str, str]
) -> None:
    """Without a key, or with a wrong one in any header or the query, every route answers 401,
    saying how to authenticate (WWW-Authenticate: Bearer, as RFC 9110 requires of a 401)."""
    async with serve() as srv:
        job = await srv.hold("alice", "held")
        path = path.format(job=job["id"])
        attempts: list[tuple[dict[str, str], dict[str, str]]] = [({}, {})]
        attempts += [(wrong, {}) for wrong in WRONG_KEYS]
        attempts += [({}, {"api_key": "not-a-key-at-all"}), ({}, {"api_key": ""})]
        for headers, params in attempts:
            async with await _request(
                srv, method, path, body, {**extra, **headers}, params=params
            ) as resp:
                await expect_error(resp, 401, "unauthorized")
                assert resp.headers["WWW-Authenticate"] == 'Bearer realm="jobwarden"'
        assert (await srv.job("alice", job["id"]))["state"] == "running"
        listing = await srv.get_json("admin", "/v1/jobs")
    assert [j["id"] for j in listing["jobs"]] == [job["id"]]


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Authorization": f"Bearer {KEYS['alice']}"}, {}),
        ({"Authorization": f"bearer {KEYS['alice']}"}, {}),
        ({"X-API-Key": KEYS["alice"]}, {}),
        ({}, {"api_key": KEYS["alice"]}),
    ],
    ids=["bearer", "bearer-lowercase", "x-api-key", "query"],
)
async def test_each_way_of_presenting_a_key_works(
    headers: dict[str, str], params: dict[str, str]
) -> None:
    """Bearer, X-API-Key and ?api_key= each authenticate alice to submit, read and cancel."""
    async with serve() as srv:
        async with srv.http.post(
            srv.url("/v1/jobs"),
            json={"tool": "fake.gate", "input": {"key": "k"}},
            headers=headers,
            params=params,
        ) as resp:
            assert resp.status == 202
            job = (await resp.json())["job"]
        assert job["owner"] == "alice"
        async with srv.http.get(srv.url("/v1/jobs"), headers=headers, params=params) as resp:
            assert resp.status == 200
            assert [j["id"] for j in (await resp.json())["jobs"]] == [job["id"]]
        async with srv.http.delete(
            srv.url(f"/v1/jobs/{job['id']}"), headers=headers, params=params
        ) as resp:
            assert resp.status == 200
            assert (await resp.json())["job"]["state"] == "cancelled"


async def test_reader_can_read_but_not_submit_or_cancel() -> None:
    """A jobs:read key reads tools, plugins, jobs and metrics, but submit and cancel are 403."""
    async with serve() as srv:
        job = await srv.hold("alice", "held")
        for path in ("/v1/tools", "/v1/plugins", "/v1/jobs", "/v1/metrics"):
            await srv.get_json("reader", path)
        refused: list[tuple[str, str, Any]] = [
            ("POST", "/v1/jobs", {"tool": "builtin.echo", "input": {"text": "x"}}),
            ("POST", "/v1/analyze-execution", IMAGE),
            ("POST", "/v1/analyze-execution/async", IMAGE),
            ("POST", f"/v1/jobs/{job['id']}/cancel", None),
            ("DELETE", f"/v1/jobs/{job['id']}", None),
            ("DELETE", f"/v1/analyze-execution/jobs/{job['id']}", None),
        ]
        for method, path, body in refused:
            async with await _request(srv, method, path, body, auth("reader")) as resp:
                await expect_error(resp, 403, "forbidden")
        assert (await srv.job("alice", job["id"]))["state"] == "running"
        everything = await srv.get_json("admin", "/v1/jobs")
        reader_sees = await srv.get_json("reader", "/v1/jobs")
    assert [j["id"] for j in everything["jobs"]] == [job["id"]]
    assert reader_sees["jobs"] == []


async def test_another_principals_job_is_404_everywhere() -> None:
    """Bob gets 404 for alice's job on every per-job route, v1 and seed, and cannot cancel it."""
    async with serve() as srv:
        job = await srv.hold("alice", "alices")
        job_id = job["id"]
        routes: list[tuple[str, str, dict[str, str]]] = [
            ("GET", f"/v1/jobs/{job_id}", {}),
            ("GET", f"/v1/jobs/{job_id}/result", {}),
            ("POST", f"/v1/jobs/{job_id}/cancel", {}),
            ("DELETE", f"/v1/jobs/{job_id}", {}),
            ("GET", f"/v1/jobs/{job_id}/events", SSE),
            ("GET", f"/v1/analyze-execution/jobs/{job_id}", {}),
            ("GET", f"/v1/analyze-execution/jobs/{job_id}/result", {}),
            ("DELETE", f"/v1/analyze-execution/jobs/{job_id}", {}),
        ]
        for method, path, extra in routes:
            async with await _request(srv, method, path, None, {**auth("bob"), **extra}) as resp:
                error = await expect_error(resp, 404, "job_not_found")
                assert error["job_id"] == job_id
        # The websocket upgrade is refused the same way, before any upgrade.
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await srv.http.ws_connect(srv.ws_url(f"/v1/jobs/{job_id}/events"), headers=auth("bob"))
        assert refused.value.status == 404
        assert (await srv.job("alice", job_id))["state"] == "running"


async def test_listings_and_event_streams_show_only_the_callers_jobs() -> None:
    """Bob's listings and /v1/events show only bob's jobs; admin's show everyone's."""
    async with serve() as srv:
        alices = await srv.submit("alice", "builtin.echo", {"text": "alice"}, wait=5)
        bobs = await srv.submit("bob", "builtin.echo", {"text": "bob"}, wait=5)
        bob_list = await srv.get_json("bob", "/v1/jobs")
        bob_seed = await srv.get_json("bob", "/v1/analyze-execution/jobs")
        alice_list = await srv.get_json("alice", "/v1/jobs")
        admin_list = await srv.get_json("admin", "/v1/jobs")
        admin_alices = await srv.job("admin", alices["id"])
        bob_events = await _stream_events(srv, "bob", lambda e: e["subject"] == bobs["id"])
        admin_events = await _stream_events(srv, "admin", lambda e: e["subject"] == bobs["id"])
    assert [j["id"] for j in bob_list["jobs"]] == [bobs["id"]]
    assert [j["id"] for j in bob_seed["jobs"]] == [bobs["id"]]
    assert [j["id"] for j in alice_list["jobs"]] == [alices["id"]]
    assert [j["id"] for j in admin_list["jobs"]] == [bobs["id"], alices["id"]]
    assert admin_alices["owner"] == "alice"
    assert {e["subject"] for e in bob_events} == {bobs["id"]}
    assert {e["data"]["owner"] for e in bob_events} == {"bob"}
    assert [e["subject"] for e in admin_events] == [alices["id"]] * 3 + [bobs["id"]] * 3


async def _stream_events(srv: Server, who: str, last: Any) -> list[dict[str, Any]]:
    """/v1/events?since=0 over a websocket as ``who``, until a succeeded event ``last`` likes."""
    got: list[dict[str, Any]] = []
    async with srv.http.ws_connect(srv.ws_url("/v1/events?since=0"), headers=auth(who)) as ws:
        while True:
            event = await receive_json(ws)
            got.append(event)
            if event["type"] == "jobwarden.job.succeeded" and last(event):
                return got


async def test_admin_sees_and_cancels_every_job() -> None:
    """Admin reads another principal's job and its result, and may cancel it."""
    async with serve() as srv:
        job = await srv.hold("bob", "bobs")
        seen = await srv.job("admin", job["id"])
        async with srv.http.post(
            srv.url(f"/v1/jobs/{job['id']}/cancel"), headers=auth("admin")
        ) as resp:
            assert resp.status == 200
        result = await srv.get_json("admin", f"/v1/jobs/{job['id']}/result")
        bobs_view = await srv.job("bob", job["id"])
    assert seen["owner"] == "bob"
    assert result["state"] == "cancelled"
    assert bobs_view["state"] == "cancelled"


async def test_open_mode_needs_no_key() -> None:
    """With no keys configured every route answers without a key (and ignores a stray one)."""
    async with serve(keys=None) as srv:
        job = await srv.submit(None, "builtin.echo", {"text": "open"}, wait=5)
        listing = await srv.get_json(None, "/v1/jobs")
        tools = await srv.get_json(None, "/v1/tools")
        async with srv.http.get(
            srv.url(f"/v1/jobs/{job['id']}"), headers={"X-API-Key": "whatever-you-like"}
        ) as resp:
            assert resp.status == 200
        running = await srv.hold(None, "open")
        async with srv.http.delete(srv.url(f"/v1/jobs/{running['id']}")) as resp:
            assert resp.status == 200
    assert job["state"] == "succeeded"
    assert [j["id"] for j in listing["jobs"]] == [job["id"]]
    assert tools["tools"]


OPEN_ROUTES = [
    ("GET", "/v1/jobs", None, {}),
    ("POST", "/v1/jobs", {"tool": "builtin.echo", "input": {"text": "x"}}, {}),
    ("GET", "/v1/events", None, SSE),
    ("GET", "/v1/events", None, WS_UPGRADE),
    ("POST", "/v1/analyze-execution/async", IMAGE, {}),
]


@pytest.mark.parametrize(("method", "path", "body", "extra"), OPEN_ROUTES)
async def test_an_open_server_answers_only_to_loopback_host_names(
    method: str, path: str, body: Any, extra: dict[str, str]
) -> None:
    """Without keys, a request naming another host (a page's own name rebound to 127.0.0.1,
    DNS rebinding) is 403 forbidden and creates nothing; localhost, loopback addresses and the
    host of an allowed origin are answered."""
    settings = ServerSettings(allowed_origins=frozenset({"http://devbox.example:8080"}))
    async with serve(keys=None, settings=settings) as srv:
        port = srv.host.rsplit(":", 1)[1]
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1.nip.io:{port}"):
            async with await _request(srv, method, path, body, {**extra, "Host": host}) as resp:
                error = await expect_error(resp, 403, "forbidden")
            assert "DNS rebinding" in error["message"]
        answered = []
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", "devbox.example:8080"):
            headers = {**extra, "Host": host, "Origin": f"http://{host}"}
            if extra is WS_UPGRADE:
                headers.pop("Origin")
            async with await _request(srv, method, path, body, headers) as resp:
                answered.append(resp.status)
        listing = await srv.get_json(None, "/v1/jobs")
    assert all(status < 300 or status == 101 for status in answered), answered
    assert len(listing["jobs"]) == 4 * (method == "POST")


async def test_a_keyed_server_answers_to_any_host_name() -> None:
    """With keys, the Host is not checked: a page elsewhere holds no key to send."""
    async with (
        serve() as srv,
        srv.http.get(
            srv.url("/v1/jobs"), headers={**auth("alice"), "Host": "jobs.example.com"}
        ) as resp,
    ):
        assert resp.status == 200
