"""The access log: one line per request, under a request id the response carries."""

from __future__ import annotations

import aiohttp
import pytest

from tests.transport.conftest import auth, serve

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
