"""The seed-compatible /v1/analyze-execution routes end to end, with DESIGN.md's exact shapes."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobwarden import JobState, Plugin, RetryPolicy, ToolContext
from jobwarden.records import JobRecord
from jobwarden.store.memory import MemoryStore
from jobwarden.store.sqlite import SqliteStore
from jobwarden.transport import seed_routes
from tests.fakes import Gates
from tests.transport.conftest import (
    ImageIn,
    ImageInfo,
    Server,
    UnreadableImage,
    auth,
    default_plugins,
    expect_error,
    serve,
)

pytestmark = pytest.mark.anyio

PNG = b"\x89PNG\r\n\x1a\n fake image bytes"
PNG_B64 = base64.b64encode(PNG).decode()
SEED_JOB_FIELDS = {"id", "plugin", "status", "created_at", "updated_at"}
SEED_RESULT_FIELDS = {
    "job_id",
    "plugin",
    "status",
    "result",
    "error",
    "created_at",
    "completed_at",
}


def _body(mime_type: str = "image/png", **extra: Any) -> dict[str, Any]:
    return {"plugin": "imaging", "image": PNG_B64, "mime_type": mime_type, **extra}


async def _post(srv: Server, path: str, body: Any, who: str = "alice") -> tuple[int, Any]:
    async with srv.http.post(srv.url(path), json=body, headers=auth(who)) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


async def _async_job(srv: Server, body: dict[str, Any]) -> str:
    status, accepted = await _post(srv, "/v1/analyze-execution/async", body)
    assert status == 202, accepted
    assert set(accepted) == {"job_id"}
    job_id: str = accepted["job_id"]
    return job_id


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_sync_analysis_runs_the_first_declared_tool() -> None:
    """POST /v1/analyze-execution runs imaging's first tool on the decoded bytes: 200, done."""
    async with serve() as srv:
        status, body = await _post(srv, "/v1/analyze-execution", _body())
        job = await srv.job("alice", body["job_id"])
    assert status == 200
    # DESIGN.md: {"plugin", "job_id", "status": "done", "result"}; "error" is an addition.
    assert (
        {"plugin", "job_id", "status", "result"}
        <= set(body)
        <= {
            "plugin",
            "job_id",
            "status",
            "result",
            "error",
        }
    )
    assert body["plugin"] == "imaging"
    assert body["status"] == "done"
    assert body["result"] == {"size": len(PNG), "mime_type": "image/png"}
    assert job["tool"] == "imaging.describe"
    assert job["input"] == {"image_bytes": PNG_B64, "mime_type": "image/png"}


async def test_tool_selects_another_tool_of_the_plugin() -> None:
    """With "tool", the named tool of the plugin runs instead of the first one."""
    async with serve() as srv:
        status, body = await _post(srv, "/v1/analyze-execution", _body(tool="digest"))
        job = await srv.job("alice", body["job_id"])
    assert status == 200
    assert body["status"] == "done"
    assert body["result"] == {"sha256": hashlib.sha256(PNG).hexdigest()}
    assert job["tool"] == "imaging.digest"


class DecoyOut(ImageInfo):
    """Which decoy tool ran."""

    ran: str = ""


def _decoy_plugins(gates: Gates) -> list[Plugin]:
    decoy = Plugin("decoy", version="1.0.0")

    @decoy.tool()
    async def first(inp: ImageIn, ctx: ToolContext) -> DecoyOut:
        """Declared first."""
        return DecoyOut(size=len(inp.image_bytes), mime_type=inp.mime_type, ran="first")

    @decoy.tool()
    async def default(inp: ImageIn, ctx: ToolContext) -> DecoyOut:
        """Named "default", declared second."""
        return DecoyOut(size=len(inp.image_bytes), mime_type=inp.mime_type, ran="default")

    return [*default_plugins(gates), decoy]


async def test_first_declared_tool_wins_over_one_named_default() -> None:
    """Without "tool" the plugin's first declared tool runs, never one hard-coded as "default"."""
    async with serve(plugins=_decoy_plugins) as srv:
        status, body = await _post(srv, "/v1/analyze-execution", _body(plugin="decoy"))
        _, named = await _post(srv, "/v1/analyze-execution", _body(plugin="decoy", tool="default"))
    assert status == 200
    assert body["result"]["ran"] == "first"
    assert named["result"]["ran"] == "default"


async def test_sync_failure_reports_status_error_with_the_envelope() -> None:
    """A tool that fails gives the sync route status "error" with the job's error envelope."""
    async with serve() as srv:
        status, body = await _post(srv, "/v1/analyze-execution", _body(tool="reject"))
    assert status == 200
    assert body["status"] == "error"
    assert body["result"] is None
    assert body["error"]["type"] == "plugin_error"
    assert "cannot read a image/png" in body["error"]["message"]


async def test_async_then_poll_status_and_result_until_done() -> None:
    """/async answers {"job_id"}; status and result show running, then done with the result."""
    async with serve() as srv:
        job_id = await _async_job(srv, _body(mime_type="gate/poll", tool="hold"))
        await srv.gates.wait_entered("gate/poll")
        running = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{job_id}")
        early = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{job_id}/result")
        srv.gates.open("gate/poll")
        await srv.sup.wait(job_id, timeout=10)
        done = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{job_id}")
        result = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{job_id}/result")
    assert set(running) == {"job"}
    assert set(running["job"]) == SEED_JOB_FIELDS
    assert running["job"]["id"] == job_id
    assert running["job"]["plugin"] == "imaging"
    assert running["job"]["status"] == "running"
    assert set(early) == SEED_RESULT_FIELDS
    assert early["status"] == "running"
    assert early["result"] is None
    assert early["error"] is None
    assert early["completed_at"] is None
    assert done["job"]["status"] == "done"
    assert _time(done["job"]["updated_at"]) >= _time(done["job"]["created_at"])
    assert set(result) == SEED_RESULT_FIELDS
    assert result["job_id"] == job_id
    assert result["plugin"] == "imaging"
    assert result["status"] == "done"
    assert result["result"] == {"size": len(PNG), "mime_type": "gate/poll"}
    assert result["error"] is None
    assert _time(result["completed_at"]) >= _time(result["created_at"])


def _retrying_plugins(gates: Gates) -> list[Plugin]:
    retried = Plugin("retried", version="1.0.0")

    # A backoff nobody waits out: the job stays queued for its second attempt until teardown.
    @retried.tool(retry=RetryPolicy(max_attempts=2, backoff_s=3600, jitter=0))
    async def flaky(inp: ImageIn, ctx: ToolContext) -> ImageInfo:
        """Fail the first attempt once its gate opens."""
        await gates.pass_through(inp.mime_type)
        raise UnreadableImage("the first attempt fails")

    return [*default_plugins(gates), retried]


async def test_updated_at_never_goes_back_when_a_job_waits_for_a_retry() -> None:
    """A job queued again for its next attempt shows an updated_at no earlier than the one it
    showed while running: a poller comparing updated_at sees the change."""
    async with serve(plugins=_retrying_plugins) as srv:
        job_id = await _async_job(srv, _body(plugin="retried", mime_type="gate/retry"))
        await srv.gates.wait_entered("gate/retry")
        running = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{job_id}")
        async with srv.sup.subscribe(job_id=job_id, since=0) as events:
            srv.gates.open("gate/retry")
            async for event in events:
                if event.type == "jobwarden.job.retrying":
                    break
        queued = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{job_id}")
        listed = await srv.get_json(
            "alice", "/v1/analyze-execution/jobs", params={"status": "queued"}
        )
    assert running["job"]["status"] == "running"
    assert queued["job"]["status"] == "queued"
    assert listed["jobs"] == [queued["job"]]
    assert _time(queued["job"]["updated_at"]) >= _time(running["job"]["updated_at"])


def test_updated_at_of_a_job_requeued_after_a_crash_is_when_it_was_requeued() -> None:
    """A job queued again with no error and no backoff (recovered after a crash) shows the
    moment it was queued again, not its creation."""
    created = datetime(2026, 1, 1, tzinfo=UTC)
    record = JobRecord(
        id="01a2206a9782200144cf7986aef72b65",
        tool="imaging.describe",
        plugin="imaging",
        state=JobState.QUEUED,
        input={},
        created_at=created,
        attempt=2,
        retry_at=created + timedelta(minutes=5),
    )
    assert seed_routes._seed_job(record).updated_at == created + timedelta(minutes=5)


async def test_result_of_a_queued_job_is_null_until_done() -> None:
    """A queued seed job's result is 200 with status queued and nulls (the seed's behaviour)."""
    async with serve(concurrency=1) as srv:
        await _async_job(srv, _body(mime_type="gate/first", tool="hold"))
        await srv.gates.wait_entered("gate/first")
        queued = await _async_job(srv, _body())
        status = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{queued}")
        result = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{queued}/result")
    assert status["job"]["status"] == "queued"
    assert status["job"]["updated_at"] == status["job"]["created_at"]
    assert result["status"] == "queued"
    assert result["result"] is None
    assert result["completed_at"] is None


async def test_list_filters_by_plugin_and_status() -> None:
    """GET /v1/analyze-execution/jobs filters by plugin and seed status, newest first, counted."""
    async with serve() as srv:
        done_1 = await _async_job(srv, _body())
        await srv.sup.wait(done_1, timeout=10)
        failed = await _async_job(srv, _body(tool="reject"))
        await srv.sup.wait(failed, timeout=10)
        done_2 = await _async_job(srv, _body(tool="digest"))
        await srv.sup.wait(done_2, timeout=10)
        running = await _async_job(srv, _body(mime_type="gate/list", tool="hold"))
        await srv.gates.wait_entered("gate/list")
        echo = await srv.submit("alice", "builtin.echo", {"text": "x"}, wait=5)
        await srv.submit("bob", "builtin.echo", {"text": "not alice's"}, wait=5)

        async def ids(**params: str) -> list[str]:
            body = await srv.get_json("alice", "/v1/analyze-execution/jobs", params=params)
            assert set(body) == {"jobs", "count", "next_cursor"}
            assert body["count"] == len(body["jobs"])
            assert body["next_cursor"] is None
            for job in body["jobs"]:
                assert set(job) == SEED_JOB_FIELDS
            return [job["id"] for job in body["jobs"]]

        everything = await ids()
        imaging = await ids(plugin="imaging")
        done = await ids(status="done")
        imaging_done = await ids(plugin="imaging", status="done")
        errors = await ids(status="error")
        running_now = await ids(status="running")
        queued = await ids(status="queued")
        nothing = await ids(plugin="nope")
    assert everything == [echo["id"], running, done_2, failed, done_1]
    assert imaging == [running, done_2, failed, done_1]
    assert done == [echo["id"], done_2, done_1]
    assert imaging_done == [done_2, done_1]
    assert errors == [failed]
    assert running_now == [running]
    assert queued == []
    assert nothing == []


async def _pages(srv: Server, **params: str) -> list[list[str]]:
    """Every page of the seed list, following next_cursor; each page's job ids."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = params if cursor is None else {**params, "cursor": cursor}
        body = await srv.get_json("alice", "/v1/analyze-execution/jobs", params=query)
        assert body["count"] == len(body["jobs"])
        pages.append([job["id"] for job in body["jobs"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert cursor == pages[-1][-1]


@pytest.mark.parametrize("sqlite", [False, True], ids=["memory", "sqlite"])
async def test_list_pages_newest_first_with_limit_and_next_cursor_across_merged_states(
    sqlite: bool, tmp_path: Path
) -> None:
    """With more jobs than ``limit``, each page holds that many, newest first, and next_cursor
    leads through the rest, also for "error", which merges failed and timed_out jobs."""
    store = SqliteStore(tmp_path / "jobs.db") if sqlite else MemoryStore()
    async with serve(store=store) as srv:
        errors: list[str] = []
        for n in range(3):
            failed = await _async_job(srv, _body(tool="reject"))
            await srv.sup.wait(failed, timeout=10)
            # Held at a gate nobody opens, so it runs out of time: timed_out.
            timed_out = await srv.submit("alice", "fake.gate", {"key": f"never{n}"}, timeout_s=0.01)
            await srv.sup.wait(timed_out["id"], timeout=10)
            errors += [failed, timed_out["id"]]
        done = await _async_job(srv, _body())
        await srv.sup.wait(done, timeout=10)
        error_pages = await _pages(srv, status="error", limit="4")
        all_pages = await _pages(srv, limit="3")
        whole = await _pages(srv)
    newest_first = errors[::-1]
    assert error_pages == [newest_first[:4], newest_first[4:]]
    assert all_pages == [[done, *newest_first[:2]], newest_first[2:5], newest_first[5:]]
    assert whole == [[done, *newest_first]]


async def test_list_past_the_largest_page_says_more_jobs_exist() -> None:
    """Past 500 jobs the list answers the newest 500 and a next_cursor to the rest, never
    silently fewer than exist."""
    async with serve() as srv:
        ids = [
            (await srv.sup.submit("builtin.echo", {"text": str(n)}, owner="alice")).id
            for n in range(501)
        ]
        pages = await _pages(srv)
        for job_id in ids:
            await srv.sup.wait(job_id, timeout=10)
    assert [len(page) for page in pages] == [500, 1]
    assert pages[0] + pages[1] == ids[::-1]


@pytest.mark.parametrize("state", ["queued", "running"])
async def test_delete_cancels_a_queued_or_running_job(state: str) -> None:
    """DELETE answers {"job_id", "status": "cancelled", "cancelled": true} and the job is over."""
    async with serve(concurrency=1) as srv:
        holder = await _async_job(srv, _body(mime_type="gate/hold", tool="hold"))
        await srv.gates.wait_entered("gate/hold")
        target = holder if state == "running" else await _async_job(srv, _body())
        before = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{target}")
        async with srv.http.delete(
            srv.url(f"/v1/analyze-execution/jobs/{target}"), headers=auth("alice")
        ) as resp:
            assert resp.status == 200
            body = await resp.json()
        after = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{target}/result")
        async with srv.http.delete(
            srv.url(f"/v1/analyze-execution/jobs/{target}"), headers=auth("alice")
        ) as resp:
            await expect_error(resp, 409, "job_finished")
    assert before["job"]["status"] == state
    assert body == {"job_id": target, "status": "cancelled", "cancelled": True}
    assert after["status"] == "cancelled"
    assert after["error"]["type"] == "cancelled"
    assert after["completed_at"] is not None


async def test_delete_of_a_finished_job_is_409() -> None:
    """DELETE of a job that is done answers 409 job_finished."""
    async with serve() as srv:
        _, body = await _post(srv, "/v1/analyze-execution", _body())
        async with srv.http.delete(
            srv.url(f"/v1/analyze-execution/jobs/{body['job_id']}"), headers=auth("alice")
        ) as resp:
            await expect_error(resp, 409, "job_finished")


@pytest.mark.parametrize(
    ("body", "status", "error_type"),
    [
        ({"plugin": "nope", "image": PNG_B64, "mime_type": "image/png"}, 404, "not_found"),
        (_body(tool="nope"), 404, "tool_not_found"),
        (_body(image="not base64!"), 400, "invalid_request"),
        (_body(image="abc"), 400, "invalid_request"),
        (_body(image="aGVsbG8"), 400, "invalid_request"),
        (_body(image="aGVs\nbG8="), 400, "invalid_request"),
        (_body(image="aGVsbG8=é"), 400, "invalid_request"),
        ({"plugin": "imaging", "mime_type": "image/png"}, 400, "invalid_request"),
        ({"plugin": "imaging", "image": PNG_B64}, 400, "invalid_request"),
        (_body(mime_type=""), 400, "invalid_request"),
        (_body(plugin=""), 400, "invalid_request"),
        (_body(image=5), 400, "invalid_request"),
        (_body(extra="field"), 400, "invalid_request"),
        ([], 400, "invalid_request"),
        (
            {"plugin": "builtin", "image": PNG_B64, "mime_type": "image/png"},
            400,
            "invalid_input",
        ),
    ],
    ids=[
        "unknown-plugin",
        "unknown-tool",
        "not-base64",
        "bad-padding",
        "missing-padding",
        "newline-in-base64",
        "non-ascii-in-base64",
        "no-image",
        "no-mime-type",
        "empty-mime-type",
        "empty-plugin",
        "image-not-a-string",
        "unknown-field",
        "array-body",
        "builtin-echo-wrong-input",
    ],
)
@pytest.mark.parametrize("route", ["/v1/analyze-execution", "/v1/analyze-execution/async"])
async def test_bad_seed_requests_are_refused_with_an_envelope(
    route: str, body: Any, status: int, error_type: str
) -> None:
    """Each malformed seed request answers its 4xx envelope and creates no job."""
    async with serve() as srv:
        async with srv.http.post(srv.url(route), json=body, headers=auth("alice")) as resp:
            error = await expect_error(resp, status, error_type)
        listing = await srv.get_json("admin", "/v1/jobs")
    assert listing["jobs"] == []
    if error_type == "invalid_input":
        assert error["tool"] == "builtin.echo"
    if error_type == "not_found":
        assert error["plugin"] == "nope"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/analyze-execution/jobs/nope"),
        ("GET", "/v1/analyze-execution/jobs/nope/result"),
        ("DELETE", "/v1/analyze-execution/jobs/nope"),
    ],
)
async def test_unknown_seed_job_is_404(method: str, path: str) -> None:
    """The seed job routes answer 404 job_not_found for an unknown id."""
    async with (
        serve() as srv,
        srv.http.request(method, srv.url(path), headers=auth("alice")) as resp,
    ):
        error = await expect_error(resp, 404, "job_not_found")
    assert error["job_id"] == "nope"


@pytest.mark.parametrize("status", ["bogus", "succeeded", "DONE", ""])
async def test_unknown_seed_status_filter_is_400(status: str) -> None:
    """status= must be one of the seed's names: queued, running, done, error, cancelled."""
    async with (
        serve() as srv,
        srv.http.get(
            srv.url("/v1/analyze-execution/jobs"), params={"status": status}, headers=auth("alice")
        ) as resp,
    ):
        await expect_error(resp, 400, "invalid_request")
