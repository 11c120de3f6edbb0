"""Every v1 route and status of DESIGN.md's HTTP API table, over real sockets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jobwarden import Plugin, ToolContext, __version__, builtin
from jobwarden.store.redis import RedisStore
from jobwarden.store.sqlite import SqliteStore
from tests.redis_server import URL
from tests.transport.conftest import (
    TERMINAL,
    auth,
    check_envelope,
    expect_error,
    serve,
)

pytestmark = pytest.mark.anyio

JOB_FIELDS = {
    "id",
    "tool",
    "plugin",
    "state",
    "attempt",
    "input",
    "result",
    "error",
    "progress",
    "owner",
    "created_at",
    "started_at",
    "finished_at",
    "idempotency_key",
}
TOOL_FIELDS = {
    "name",
    "plugin",
    "description",
    "mode",
    "timeout_s",
    "input_schema",
    "output_schema",
}
PLUGIN_HEALTH_FIELDS = {
    "state",
    "reason",
    "version",
    "uptime_s",
    "success_count",
    "error_count",
    "timeout_count",
    "cancel_count",
    "in_flight",
    "last_used",
    "last_ms",
    "avg_ms",
    "p95_ms",
    "abandoned_threads",
}


# --- health, tools, plugins, metrics ----------------------------------------------------------


async def test_health_answers_without_a_key() -> None:
    """GET /v1/health needs no key and answers status, version and uptime."""
    async with serve() as srv, srv.http.get(srv.url("/v1/health")) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    assert set(body) == {"status", "version", "uptime_s"}
    assert body["status"] == "ok"
    assert body["version"] == __version__
    assert isinstance(body["uptime_s"], float | int)
    assert body["uptime_s"] >= 0


async def test_health_names_the_cluster_node_answering(redis_prefix: str) -> None:
    """On a shared (Redis) store, GET /v1/health also answers the node's name."""
    store = RedisStore(f"{URL}?prefix={redis_prefix}", node="node-a")
    async with serve(store=store) as srv, srv.http.get(srv.url("/v1/health")) as resp:
        body = await resp.json()
    assert (body["status"], body["node"]) == ("ok", "node-a")


async def test_tools_list_every_tool_with_its_schemas() -> None:
    """GET /v1/tools lists every registered tool with its plugin, mode, timeout and schemas."""
    async with serve() as srv:
        body = await srv.get_json("reader", "/v1/tools")
        expected = {t.name for t in srv.sup.registry.tools()}
    tools = {t["name"]: t for t in body["tools"]}
    assert set(tools) == expected
    assert {"builtin.echo", "fake.gate", "imaging.describe"} <= set(tools)
    for tool in tools.values():
        assert set(tool) >= TOOL_FIELDS, tool
        assert tool["input_schema"]
        assert tool["output_schema"]
    echo = tools["builtin.echo"]
    assert echo["plugin"] == "builtin"
    assert echo["mode"] == "async"
    assert echo["timeout_s"] == 10.0
    assert "text" in str(echo["input_schema"])
    assert tools["builtin.sha256"]["mode"] == "thread"


async def test_one_tool_and_an_unknown_tool() -> None:
    """GET /v1/tools/{name} answers one tool with its schemas, or 404 tool_not_found."""
    async with serve() as srv:
        tool = await srv.get_json("alice", "/v1/tools/imaging.describe")
        async with srv.http.get(srv.url("/v1/tools/imaging.nope"), headers=auth("alice")) as resp:
            error = await expect_error(resp, 404, "tool_not_found")
    assert set(tool) >= TOOL_FIELDS
    assert tool["name"] == "imaging.describe"
    assert tool["plugin"] == "imaging"
    assert tool["description"] == "Size and MIME type of the image."
    schema = str(tool["input_schema"])
    assert "image_bytes" in schema
    assert "mime_type" in schema
    assert "size" in str(tool["output_schema"])
    assert error["tool"] == "imaging.nope"


async def test_plugins_list_with_lifecycle_state_and_metrics() -> None:
    """GET /v1/plugins lists each plugin's lifecycle state, version, uptime and summed metrics."""
    async with serve() as srv:
        await srv.submit("alice", "builtin.echo", {"text": "hi"}, wait=5)
        await srv.submit("alice", "builtin.fail", {}, wait=5)
        body = await srv.get_json("reader", "/v1/plugins")
    plugins = {p["name"]: p for p in body["plugins"]}
    assert set(plugins) == {"builtin", "fake", "imaging"}
    for plugin in plugins.values():
        assert set(plugin) >= PLUGIN_HEALTH_FIELDS, plugin
        assert plugin["state"] == "running"
        assert plugin["reason"] is None
        assert plugin["uptime_s"] >= 0
    used = plugins["builtin"]
    assert used["version"] == "1.0.0"
    assert used["success_count"] == 1
    assert used["error_count"] == 1
    assert used["in_flight"] == 0
    assert used["last_used"].endswith("Z")  # as every other time the API gives
    assert used["avg_ms"] is not None
    assert used["p95_ms"] is not None
    idle = plugins["imaging"]
    assert idle["version"] == "2.1.0"
    assert idle["success_count"] == idle["error_count"] == 0
    assert idle["last_used"] is None
    assert idle["avg_ms"] is None


async def test_plugin_health_and_an_unknown_plugin() -> None:
    """GET /v1/plugins/{name}/health answers one plugin's health, or 404 not_found."""
    async with serve() as srv:
        await srv.hold("alice", "busy")
        health = await srv.get_json("alice", "/v1/plugins/fake/health")
        async with srv.http.get(srv.url("/v1/plugins/nope/health"), headers=auth("alice")) as r:
            error = await expect_error(r, 404, "not_found")
    assert set(health) >= PLUGIN_HEALTH_FIELDS
    assert health["name"] == "fake"
    assert health["in_flight"] == 1
    assert health["abandoned_threads"] == 0
    assert "fake.gate" in health["tools"]
    assert error["plugin"] == "nope"


async def test_metrics_are_json_per_tool_with_the_supervisor_load() -> None:
    """GET /v1/metrics answers per-tool counters and the supervisor's statistics as JSON."""
    async with serve() as srv:
        await srv.submit("alice", "builtin.echo", {"text": "a"}, wait=5)
        await srv.submit("alice", "builtin.echo", {"text": "b"}, wait=5)
        await srv.hold("alice", "held")
        async with srv.http.get(srv.url("/v1/metrics"), headers=auth("reader")) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            body = await resp.json()
    tools = {m["tool"]: m for m in body["tools"]}
    assert tools["builtin.echo"]["calls"] == 2
    assert tools["builtin.echo"]["successes"] == 2
    assert tools["fake.gate"]["in_flight"] == 1
    supervisor = body["supervisor"]
    assert supervisor["running"] == 1
    assert supervisor["runners"] == 8
    assert supervisor["accepting"] is True
    assert {"queued", "subscribers", "restarts"} <= set(supervisor)


async def test_prometheus_metrics_exposition() -> None:
    """GET /metrics answers text a Prometheus parser reads, with per-tool outcomes counted."""
    async with serve() as srv:
        await srv.submit("alice", "builtin.echo", {"text": "a"}, wait=5)
        await srv.submit("alice", "builtin.fail", {}, wait=5)
        async with srv.http.get(srv.url("/metrics"), headers=auth("reader")) as resp:
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            text = await resp.text()
        async with srv.http.get(srv.url("/metrics")) as resp:
            await expect_error(resp, 401, "unauthorized")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    totals = {
        (s.labels["tool"], s.labels["outcome"]): s.value
        for s in families["jobwarden_jobs"].samples
        if s.name == "jobwarden_jobs_total"
    }
    assert totals[("builtin.echo", "succeeded")] == 1
    assert totals[("builtin.fail", "plugin_error")] == 1
    assert {"jobwarden_queue_depth", "jobwarden_jobs_in_flight", "jobwarden_event_subscribers"} <= (
        set(families)
    )


# --- POST /v1/jobs ----------------------------------------------------------------------------


async def test_submit_answers_202_with_the_queued_job() -> None:
    """POST /v1/jobs without wait answers 202 with the new job in state queued."""
    async with serve() as srv:
        async with srv.http.post(
            srv.url("/v1/jobs"),
            json={"tool": "builtin.echo", "input": {"text": "hi"}, "timeout_s": 5},
            headers=auth("alice"),
        ) as resp:
            assert resp.status == 202
            assert resp.content_type == "application/json"
            body = await resp.json()
        job = body["job"]
        done = await srv.finished(job["id"])
    assert set(body) == {"job"}
    assert set(job) >= JOB_FIELDS
    assert job["state"] == "queued"
    assert job["tool"] == "builtin.echo"
    assert job["plugin"] == "builtin"
    assert job["owner"] == "alice"
    assert job["attempt"] == 1
    assert job["input"] == {"text": "hi"}
    assert job["result"] is None
    assert job["error"] is None
    assert job["started_at"] is None
    assert job["finished_at"] is None
    assert done["state"] == "succeeded"
    assert done["result"] == {"text": "hi"}


async def test_submit_with_wait_answers_200_once_the_job_finished() -> None:
    """POST /v1/jobs?wait=5 answers 200 with the succeeded job and its result."""
    async with (
        serve() as srv,
        srv.http.post(
            srv.url("/v1/jobs"),
            params={"wait": "5"},
            json={"tool": "builtin.echo", "input": {"text": "hello"}},
            headers=auth("alice"),
        ) as resp,
    ):
        assert resp.status == 200
        job = (await resp.json())["job"]
    assert job["state"] == "succeeded"
    assert job["result"] == {"text": "hello"}
    assert job["error"] is None
    assert job["started_at"] is not None
    assert job["finished_at"] is not None


class Pair(msgspec.Struct, array_like=True):
    """An input read from a JSON array: ``[count, label]``."""

    count: int
    label: str = "x"


pairs = Plugin("pairs")


@pairs.tool()
async def join(inp: Pair, ctx: ToolContext) -> str:
    """The count and the label, joined."""
    return f"{inp.count}{inp.label}"


@pytest.mark.parametrize(
    ("body", "status", "outcome"),
    [
        ({"tool": "pairs.join", "input": [1, "y"]}, 200, "1y"),
        ({"tool": "pairs.join", "input": {"count": 1}}, 400, "invalid_input"),
        ({"tool": "pairs.join"}, 400, "invalid_input"),
        ({"tool": "builtin.echo", "input": ["hi"]}, 400, "invalid_input"),
    ],
    ids=["array", "object-for-array", "no-input", "array-for-object"],
)
async def test_an_array_input_reaches_a_tool_whose_input_is_array_like(
    body: dict[str, Any], status: int, outcome: str
) -> None:
    """An array input runs a tool whose input type is array_like; the tools judge the shape."""
    async with (
        serve(plugins=lambda gates: [builtin, pairs]) as srv,
        srv.http.post(
            srv.url("/v1/jobs"), params={"wait": "5"}, json=body, headers=auth("alice")
        ) as resp,
    ):
        assert resp.status == status
        answer = await resp.json()
    if status == 200:
        assert answer["job"]["result"] == outcome
    else:
        assert check_envelope(answer, outcome)["tool"] == body["tool"]


async def test_a_failed_job_with_wait_is_still_200() -> None:
    """A job that fails within ``wait`` answers 200 (the request succeeded) in state failed."""
    async with (
        serve() as srv,
        srv.http.post(
            srv.url("/v1/jobs?wait=5"),
            json={"tool": "builtin.fail", "input": {"message": "boom"}},
            headers=auth("alice"),
        ) as resp,
    ):
        assert resp.status == 200
        job = (await resp.json())["job"]
    assert job["state"] == "failed"
    assert job["result"] is None
    error = check_envelope({"error": job["error"]}, "plugin_error")
    assert "boom" in error["message"]
    assert error["tool"] == "builtin.fail"
    assert error["job_id"] == job["id"]
    assert "Traceback" not in str(job)


async def test_a_wait_that_expires_answers_202() -> None:
    """When the job is still running after ``wait`` seconds the answer is 202 with it running."""
    async with serve() as srv:
        async with srv.http.post(
            srv.url("/v1/jobs?wait=0.05"),
            json={"tool": "fake.gate", "input": {"key": "slow"}},
            headers=auth("alice"),
        ) as resp:
            assert resp.status == 202
            job = (await resp.json())["job"]
        assert job["state"] in {"queued", "running"}
        srv.gates.open("slow")
        assert (await srv.finished(job["id"]))["state"] == "succeeded"


@pytest.mark.parametrize("wait", ["-1", "abc", "nan", "inf", "-inf", "61", "", "1e400"])
async def test_bad_wait_values_are_400_and_create_no_job(wait: str) -> None:
    """A wait that is not a number of seconds in [0, max_wait_s] is 400 and no job is created."""
    async with serve() as srv:
        async with srv.http.post(
            srv.url("/v1/jobs"),
            params={"wait": wait},
            json={"tool": "builtin.echo", "input": {"text": "x"}},
            headers=auth("alice"),
        ) as resp:
            await expect_error(resp, 400, "invalid_request")
        listing = await srv.get_json("alice", "/v1/jobs")
    assert listing["jobs"] == []


async def test_overload_is_429_with_retry_after() -> None:
    """With the queue full, POST /v1/jobs answers 429 overloaded with a Retry-After header."""
    async with serve(concurrency=1, max_queued=1) as srv:
        await srv.hold("alice", "first")
        await srv.submit("alice", "builtin.echo", {"text": "queued"})
        async with srv.http.post(
            srv.url("/v1/jobs"),
            json={"tool": "builtin.echo", "input": {"text": "refused"}},
            headers=auth("alice"),
        ) as resp:
            await expect_error(resp, 429, "overloaded")
            assert int(resp.headers["Retry-After"]) >= 1


# --- GET /v1/jobs -----------------------------------------------------------------------------


async def test_listing_is_newest_first_and_filters_by_state_and_tool() -> None:
    """GET /v1/jobs lists newest first and honours the state and tool filters together."""
    async with serve() as srv:
        submitted: list[dict[str, Any]] = []
        for n in range(3):
            submitted.append(await srv.submit("alice", "builtin.echo", {"text": str(n)}, wait=5))
            submitted.append(await srv.submit("alice", "builtin.fail", {}, wait=5))
        everything = await srv.get_json("alice", "/v1/jobs")
        failed = await srv.get_json("alice", "/v1/jobs", params={"state": "failed"})
        echoes = await srv.get_json("alice", "/v1/jobs", params={"tool": "builtin.echo"})
        none = await srv.get_json(
            "alice", "/v1/jobs", params={"state": "failed", "tool": "builtin.echo"}
        )
        unknown_tool = await srv.get_json("alice", "/v1/jobs", params={"tool": "no.such"})
    newest_first = [j["id"] for j in reversed(submitted)]
    assert [j["id"] for j in everything["jobs"]] == newest_first
    assert everything["next_cursor"] is None
    assert [j["id"] for j in failed["jobs"]] == [
        j["id"] for j in reversed(submitted) if j["tool"] == "builtin.fail"
    ]
    assert {j["state"] for j in failed["jobs"]} == {"failed"}
    assert [j["id"] for j in echoes["jobs"]] == [
        j["id"] for j in reversed(submitted) if j["tool"] == "builtin.echo"
    ]
    assert none["jobs"] == []
    assert unknown_tool["jobs"] == []


@pytest.mark.parametrize(
    ("limit", "ok"), [("1", True), ("500", True), ("0", False), ("501", False)]
)
async def test_limit_must_be_within_1_to_500(limit: str, ok: bool) -> None:
    """limit=1 and limit=500 are accepted; 0 and 501 are 400 invalid_request."""
    async with serve() as srv:
        await srv.submit("alice", "builtin.echo", {"text": "a"}, wait=5)
        await srv.submit("alice", "builtin.echo", {"text": "b"}, wait=5)
        async with srv.http.get(
            srv.url("/v1/jobs"), params={"limit": limit}, headers=auth("alice")
        ) as resp:
            if ok:
                assert resp.status == 200
                body = await resp.json()
                assert len(body["jobs"]) == min(2, int(limit))
                assert (body["next_cursor"] is None) == (int(limit) >= 2)
            else:
                await expect_error(resp, 400, "invalid_request")


async def test_cursor_pagination_walks_every_page_exactly_once() -> None:
    """Following next_cursor with limit=5 visits all 23 jobs once, newest first, then stops."""
    async with serve() as srv:
        ids = [
            (await srv.submit("alice", "builtin.echo", {"text": str(n)}))["id"] for n in range(23)
        ]
        pages: list[list[str]] = []
        cursor: str | None = None
        for _ in range(10):
            params = {"limit": "5"} if cursor is None else {"limit": "5", "cursor": cursor}
            page = await srv.get_json("alice", "/v1/jobs", params=params)
            pages.append([j["id"] for j in page["jobs"]])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [job_id for page in pages for job_id in page] == list(reversed(ids))


@pytest.mark.parametrize("cursor", ["not-a-cursor", "zzz", "-1"])
async def test_a_forged_cursor_is_a_400_on_the_memory_store(cursor: str) -> None:
    """On the memory store a cursor that is not a job id is 400 invalid_request, as on SQLite,
    not a page of everything (or of nothing)."""
    async with serve() as srv:
        await srv.submit("alice", "builtin.echo", {"text": "x"})
        async with srv.http.get(
            srv.url("/v1/jobs"), params={"cursor": cursor}, headers=auth("alice")
        ) as resp:
            error = await expect_error(resp, 400, "invalid_request")
    assert "is not a next_cursor this server gave out" in error["message"]


async def test_sqlite_cursors_page_on_and_a_forged_cursor_is_a_400(tmp_path: Path) -> None:
    """On the SQLite store a page's next_cursor, and a job id as cursor (what earlier versions
    gave out), each page on; a cursor it never gave out is 400 invalid_request."""
    async with serve(store=SqliteStore(tmp_path / "jobs.db")) as srv:
        ids = [
            (await srv.submit("alice", "builtin.echo", {"text": str(n)}))["id"] for n in range(5)
        ]
        first = await srv.get_json("alice", "/v1/jobs", params={"limit": "2"})
        second = await srv.get_json(
            "alice", "/v1/jobs", params={"limit": "2", "cursor": first["next_cursor"]}
        )
        by_id = await srv.get_json("alice", "/v1/jobs", params={"limit": "2", "cursor": ids[3]})
        async with srv.http.get(
            srv.url("/v1/jobs"), params={"cursor": "not-a-cursor"}, headers=auth("alice")
        ) as resp:
            await expect_error(resp, 400, "invalid_request")
    assert [j["id"] for j in first["jobs"] + second["jobs"]] == ids[:0:-1]
    assert [j["id"] for j in by_id["jobs"]] == [ids[2], ids[1]]


# --- one job: get, result, cancel -------------------------------------------------------------


async def test_get_one_job_and_an_unknown_job() -> None:
    """GET /v1/jobs/{id} answers {"job"}; an unknown id is 404 job_not_found naming it."""
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        body = await srv.get_json("alice", f"/v1/jobs/{job['id']}")
        async with srv.http.get(srv.url("/v1/jobs/0123abc"), headers=auth("alice")) as resp:
            error = await expect_error(resp, 404, "job_not_found")
    assert set(body) == {"job"}
    assert body["job"] == job
    assert error["job_id"] == "0123abc"


async def test_result_is_409_while_running_and_200_once_finished() -> None:
    """GET /v1/jobs/{id}/result is 409 job_not_finished before the end and 200 with it after."""
    async with serve() as srv:
        job = await srv.hold("alice", "result")
        async with srv.http.get(
            srv.url(f"/v1/jobs/{job['id']}/result"), headers=auth("alice")
        ) as resp:
            error = await expect_error(resp, 409, "job_not_finished")
        srv.gates.open("result")
        await srv.finished(job["id"])
        body = await srv.get_json("alice", f"/v1/jobs/{job['id']}/result")
    assert error["job_id"] == job["id"]
    assert error["tool"] == "fake.gate"
    assert body == {
        "job_id": job["id"],
        "state": "succeeded",
        "result": {"text": "result"},
        "error": None,
    }


async def test_result_of_a_failed_job_carries_its_error() -> None:
    """A failed job's /result is 200 with result null and the error envelope body."""
    async with serve() as srv:
        job = await srv.submit("alice", "builtin.fail", {"message": "nope"}, wait=5)
        body = await srv.get_json("alice", f"/v1/jobs/{job['id']}/result")
    assert set(body) == {"job_id", "state", "result", "error"}
    assert body["state"] == "failed"
    assert body["result"] is None
    error = check_envelope({"error": body["error"]}, "plugin_error")
    assert "nope" in error["message"]


async def test_result_of_a_queued_job_is_409() -> None:
    """A job still queued behind another has no result yet: 409 job_not_finished."""
    async with serve(concurrency=1) as srv:
        await srv.hold("alice", "first")
        queued = await srv.submit("alice", "builtin.echo", {"text": "later"})
        async with srv.http.get(
            srv.url(f"/v1/jobs/{queued['id']}/result"), headers=auth("alice")
        ) as resp:
            await expect_error(resp, 409, "job_not_finished")
        assert (await srv.job("alice", queued["id"]))["state"] == "queued"


@pytest.mark.parametrize("how", ["POST cancel", "DELETE"])
async def test_cancel_a_queued_job(how: str) -> None:
    """Cancelling a queued job (POST /cancel or DELETE) answers 200 with it cancelled."""
    async with serve(concurrency=1) as srv:
        await srv.hold("alice", "first")
        queued = await srv.submit("alice", "builtin.echo", {"text": "never"})
        method, path = _cancel_route(how, queued["id"])
        async with srv.http.request(method, srv.url(path), headers=auth("alice")) as resp:
            assert resp.status == 200
            body = await resp.json()
        after = await srv.job("alice", queued["id"])
    assert set(body) == {"job"}
    assert body["job"]["state"] == "cancelled"
    assert body["job"]["started_at"] is None
    assert body["job"]["error"]["type"] == "cancelled"
    assert after["state"] == "cancelled"


@pytest.mark.parametrize("how", ["POST cancel", "DELETE"])
async def test_cancel_a_running_job(how: str) -> None:
    """Cancelling a running job (POST /cancel or DELETE) answers 200 with it cancelled."""
    async with serve() as srv:
        running = await srv.hold("alice", "running")
        method, path = _cancel_route(how, running["id"])
        async with srv.http.request(method, srv.url(path), headers=auth("alice")) as resp:
            assert resp.status == 200
            body = await resp.json()
        result = await srv.get_json("alice", f"/v1/jobs/{running['id']}/result")
    assert body["job"]["state"] == "cancelled"
    assert body["job"]["started_at"] is not None
    assert result["state"] == "cancelled"
    assert result["error"]["type"] == "cancelled"


@pytest.mark.parametrize("how", ["POST cancel", "DELETE"])
async def test_cancelling_a_finished_job_is_409(how: str) -> None:
    """Cancelling a job that already ended is 409 job_finished and leaves it as it was."""
    async with serve() as srv:
        done = await srv.submit("alice", "builtin.echo", {"text": "done"}, wait=5)
        method, path = _cancel_route(how, done["id"])
        async with srv.http.request(method, srv.url(path), headers=auth("alice")) as resp:
            error = await expect_error(resp, 409, "job_finished")
        after = await srv.job("alice", done["id"])
    assert error["job_id"] == done["id"]
    assert after == done


async def test_cancelling_twice_is_409_the_second_time() -> None:
    """A job cancelled once is terminal: a second cancel answers 409 job_finished."""
    async with serve() as srv:
        running = await srv.hold("alice", "twice")
        path = f"/v1/jobs/{running['id']}/cancel"
        async with srv.http.post(srv.url(path), headers=auth("alice")) as resp:
            assert resp.status == 200
        async with srv.http.post(srv.url(path), headers=auth("alice")) as resp:
            await expect_error(resp, 409, "job_finished")


def _cancel_route(how: str, job_id: str) -> tuple[str, str]:
    if how == "DELETE":
        return "DELETE", f"/v1/jobs/{job_id}"
    return "POST", f"/v1/jobs/{job_id}/cancel"


async def test_every_terminal_state_is_reported() -> None:
    """The states a job can end in are all reachable over HTTP and listed by state."""
    async with serve() as srv:
        ok = await srv.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        failed = await srv.submit("alice", "builtin.fail", {}, wait=5)
        timed_out = await srv.submit("alice", "fake.hang", {"key": "hang"}, wait=5)
        cancelled = await srv.hold("alice", "cancel-me")
        async with srv.http.delete(
            srv.url(f"/v1/jobs/{cancelled['id']}"), headers=auth("alice")
        ) as resp:
            assert resp.status == 200
        states = {}
        for state in TERMINAL:
            listing = await srv.get_json("alice", "/v1/jobs", params={"state": state})
            states[state] = [j["id"] for j in listing["jobs"]]
    assert states == {
        "succeeded": [ok["id"]],
        "failed": [failed["id"]],
        "timed_out": [timed_out["id"]],
        "cancelled": [cancelled["id"]],
    }
    assert timed_out["error"]["type"] == "timeout"
