"""The access log: one line per request, under a request id the response carries."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from tests.transport.conftest import KEYS, Server, auth, serve

pytestmark = pytest.mark.anyio


async def test_each_request_gets_its_own_id_and_one_log_line() -> None:
    """Requests without an id get distinct ones, logged with route, status, principal, duration."""
    async with serve() as server:
        ids = []
        for _ in range(2):
            async with server.http.get(server.url("/v1/tools"), headers=auth("alice")) as resp:
                assert resp.status == 200
                ids.append(resp.headers["X-Request-ID"])
        assert len(set(ids)) == 2
        lines = [entry for entry in server.logs if entry["event"] == "request"]
        assert [line["request_id"] for line in lines] == ids
        for line in lines:
            assert line["method"] == "GET"
            assert line["route"] == "/v1/tools"
            assert line["status"] == 200
            assert line["principal"] == "alice"
            assert line["duration_ms"] >= 0
            assert round(line["duration_ms"], 3) == line["duration_ms"]  # whole microseconds


async def test_a_given_request_id_is_kept() -> None:
    """An X-Request-ID sent by the client is echoed and logged instead of a new one."""
    async with serve() as server:
        headers = {**auth("alice"), "X-Request-ID": "trace-42"}
        async with server.http.get(server.url("/v1/tools"), headers=headers) as resp:
            assert resp.headers["X-Request-ID"] == "trace-42"
        assert [e["request_id"] for e in server.logs if e["event"] == "request"] == ["trace-42"]


async def test_job_routes_log_the_job_they_touched() -> None:
    """Submit, get, result and cancel lines carry the job's id and tool; a 404 carries none."""
    async with serve() as server:
        job = await server.hold("alice", "held")
        await server.job("alice", job["id"])
        async with server.http.post(
            server.url(f"/v1/jobs/{job['id']}/cancel"), headers=auth("alice")
        ) as resp:
            assert resp.status == 200
        await server.get_json("alice", f"/v1/jobs/{job['id']}/result")
        await server.get_json("alice", "/v1/jobs/nope", status=404)
        lines = [entry for entry in server.logs if entry["event"] == "request"]
    assert [line["route"] for line in lines] == [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/cancel",
        "/v1/jobs/{id}/result",
        "/v1/jobs/{id}",
    ]
    for line in lines[:4]:
        assert (line["job_id"], line["tool"]) == (job["id"], "fake.gate")
    assert "job_id" not in lines[4]


async def test_a_request_s_bindings_end_with_it_on_a_kept_alive_connection() -> None:
    """The request after a job submit on the same connection logs no job and only its own id."""
    connections: list[tuple[object, ...]] = []

    async def opened(*args: object) -> None:
        connections.append(args)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(opened)
    async with (
        serve() as server,
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), trace_configs=[trace]
        ) as http,
    ):
        body = {"tool": "builtin.echo", "input": {"text": "hi"}}
        async with http.post(
            server.url("/v1/jobs?wait=5"), json=body, headers=auth("alice")
        ) as resp:
            assert resp.status == 200
            job = (await resp.json())["job"]
        async with http.get(server.url("/v1/health")) as resp:
            assert resp.status == 200
            health_id = resp.headers["X-Request-ID"]
        submit, health = [entry for entry in server.logs if entry["event"] == "request"]
    assert len(connections) == 1
    assert (submit["job_id"], submit["principal"]) == (job["id"], "alice")
    assert health["request_id"] == health_id != submit["request_id"]
    assert health["principal"] is None
    assert "job_id" not in health
    assert "tool" not in health


async def _raw_get(server: Server, request_id: bytes) -> tuple[bytes, bytes]:
    """GET /v1/tools as alice with ``X-Request-ID: <request_id>`` sent as raw bytes; the status
    line and the X-Request-ID the response carries."""
    host, port = server.host.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"GET /v1/tools HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
            + b"Authorization: Bearer "
            + KEYS["alice"].encode()
            + b"\r\nX-Request-ID: "
            + request_id
            + b"\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head = answer.partition(b"\r\n\r\n")[0].split(b"\r\n")
    [echoed] = [
        line[len(b"X-Request-ID: ") :] for line in head if line.startswith(b"X-Request-ID:")
    ]
    return head[0], echoed


UNSAFE_IDS = [
    b"\xff\xfe",
    b"caf\xc3\xa9",
    b"a b",
    b"<script>",
    b"a/b",
    b"x" * 129,
]


@pytest.mark.parametrize(
    "request_id", UNSAFE_IDS, ids=["not-utf8", "non-ascii", "space", "markup", "slash", "129-chars"]
)
async def test_an_unsafe_request_id_is_replaced_by_a_new_one(request_id: bytes) -> None:
    """An X-Request-ID that is not 1-128 of [A-Za-z0-9._:-] is treated as absent: the request is
    answered as usual under a new id, which the response and the log line carry."""
    async with serve() as server:
        status, echoed = await _raw_get(server, request_id)
        [line] = [e for e in server.logs if e["event"] == "request"]
    assert status == b"HTTP/1.1 200 OK"
    assert echoed != request_id
    assert re.fullmatch(rb"[0-9a-f]{22}", echoed), echoed
    assert (line["request_id"], line["status"]) == (echoed.decode(), 200)


async def test_the_longest_safe_request_id_is_kept() -> None:
    """128 characters of letters, digits and . _ : - are kept as the client sent them."""
    safe = (b"Az09._:-" * 16)[:128]
    async with serve() as server:
        status, echoed = await _raw_get(server, safe)
    assert (status, echoed) == (b"HTTP/1.1 200 OK", safe)
