"""The client commands facing answers a healthy jobwarden never gives (a scripted server)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import WSCloseCode, web

from tests.cli.conftest import jobwarden
from tests.cli.fake_server import answer, event, fake_server, reset, scripted

pytestmark = pytest.mark.anyio

WIDE = {"COLUMNS": "200"}  # stderr's messages on one line each
JOB = {"job": {"id": "j1", "tool": "fake.tool", "state": "queued", "result": None, "error": None}}


async def test_an_answer_without_json_is_not_jobwarden() -> None:
    """A 200 that is not JSON exits 1 asking whether the URL is a jobwarden server."""
    async with fake_server([web.get("/v1/jobs", answer("<html>hello</html>"))]) as url:
        done = await jobwarden(url, "jobs")
    assert done.code == 1
    assert (
        done.err.strip() == f"jobwarden: {url}/v1/jobs answered 200 without JSON: is it jobwarden?"
    )


@pytest.mark.parametrize(
    "body",
    [
        [1, 2, 3],
        {"job": {"id": 5}},
        {"jobs": "none"},
        {"job": {**JOB["job"], "state": "sleeping"}},
        {"jobs": [{**JOB["job"], "tool": "t.t", "created_at": "yesterday"}]},
    ],
    ids=["array", "id not text", "jobs not a list", "unknown state", "bad time"],
)
@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("POST", ("submit", "fake.tool")),
        ("POST", ("submit", "fake.tool", "--wait")),
        ("GET", ("jobs",)),
        ("POST", ("cancel", "j1")),
    ],
    ids=["submit", "submit --wait", "jobs", "cancel"],
)
async def test_json_of_another_shape_is_not_jobwarden(
    body: object, method: str, args: tuple[str, ...]
) -> None:
    """A 200 whose JSON lacks what the command reads exits 1 asking whether it is jobwarden."""
    async with fake_server([web.route(method, "/{tail:.*}", answer(body))]) as url:
        done = await jobwarden(url, *args)
    assert done.code == 1, done.err
    assert "with JSON that is not jobwarden's" in done.err
    assert done.err.strip().endswith(": is it jobwarden?")
    assert "Traceback" not in done.err


def busy(kind: str, status: int, retry_after: str) -> Any:
    """A handler refusing with an error envelope of ``kind`` and a Retry-After header."""

    async def handler(request: web.Request) -> web.StreamResponse:
        envelope = {"error": {"type": kind, "message": "not now"}}
        return web.json_response(envelope, status=status, headers={"Retry-After": retry_after})

    return handler


@pytest.mark.parametrize(
    ("kind", "status", "retry_after", "shown"),
    [
        ("overloaded", 429, "7", "overloaded: not now (retry after 7s)"),
        ("rate_limited", 429, "1", "rate_limited: not now (retry after 1s)"),
        ("shutting_down", 503, "5", "shutting_down: not now (retry after 5s)"),
        ("overloaded", 429, "Wed, 21 Oct 2026 07:28:00 GMT", "overloaded: not now"),
        ("overloaded", 429, "-3", "overloaded: not now"),
    ],
    ids=["overloaded", "rate limited", "shutting down", "a date", "not a number"],
)
async def test_a_busy_server_says_when_to_retry(
    kind: str, status: int, retry_after: str, shown: str
) -> None:
    """A 429 or 503 exits 1 with the server's Retry-After seconds in its one line."""
    async with fake_server([web.route("*", "/{tail:.*}", busy(kind, status, retry_after))]) as url:
        submitted = await jobwarden(url, "submit", "fake.tool")
        listed = await jobwarden(url, "jobs")
    assert (submitted.code, submitted.err) == (1, f"jobwarden: {shown}\n")
    assert (listed.code, listed.err) == (1, f"jobwarden: {shown}\n")


async def test_json_that_is_not_utf8_is_not_jobwarden() -> None:
    """JSON whose strings hold bytes that are not UTF-8 counts as no JSON, for 200 and 400 alike."""
    latin1 = b'{"error": {"type": "invalid_request", "message": "caf\xe9"}}'

    def raw(status: int) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=latin1, status=status, content_type="application/json")

        return handler

    routes = [web.get("/v1/jobs", raw(200)), web.post("/v1/jobs/j1/cancel", raw(400))]
    async with fake_server(routes) as url:
        listed = await jobwarden(url, "jobs")
        cancelled = await jobwarden(url, "cancel", "j1")
    assert (listed.code, listed.err) == (
        1,
        f"jobwarden: {url}/v1/jobs answered 200 without JSON: is it jobwarden?\n",
    )
    assert (cancelled.code, cancelled.err) == (
        1,
        "jobwarden: http_error: HTTP 400 without an error envelope\n",
    )


async def test_an_error_without_an_envelope_names_the_status() -> None:
    """A 502 from a proxy in front exits 1 with the bare status."""
    async with fake_server([web.get("/v1/jobs", answer("Bad Gateway", 502))]) as url:
        done = await jobwarden(url, "jobs")
    assert done.code == 1
    assert done.err.strip() == "jobwarden: http_error: HTTP 502 without an error envelope"


async def test_a_refused_event_stream_is_an_error() -> None:
    """A job that exists but whose stream is refused (404) exits 2, and 401 says to give a key."""
    routes = [
        web.get("/v1/jobs/j1", answer(JOB)),
        web.get("/v1/jobs/j1/events", answer("gone", 404)),
        web.get("/v1/jobs/j2", answer(JOB)),
        web.get("/v1/jobs/j2/events", answer("who?", 401)),
    ]
    async with fake_server(routes) as url:
        missing = await jobwarden(url, "watch", "--job", "j1")
        unauthorized = await jobwarden(url, "watch", "--job", "j2")
    assert missing.code == 2
    assert missing.err.strip() == "jobwarden: not_found: no such job or tool"
    assert unauthorized.code == 1
    assert "--api-key or JOBWARDEN_API_KEY" in unauthorized.err


async def test_control_frames_are_skipped_and_a_reset_is_reported() -> None:
    """Pongs, binary frames, garbage and non-objects are skipped; a reset is printed (JSON) and
    reported."""
    frames: list[str | bytes] = [
        '{"type": "pong"}',
        b"\x00binary",
        "not json",
        "[1, 2]",
        reset(5),
        event(6, "j1", "queued"),
        event(7, "j1", "succeeded", result={"ok": True}),
    ]
    routes = [web.get("/v1/jobs/j1", answer(JOB)), web.get("/v1/jobs/j1/events", scripted(frames))]
    async with fake_server(routes) as url:
        done = await jobwarden(url, "watch", "--job", "j1", "--json")
    assert done.code == 0, done.err
    assert [json.loads(line)["id"] for line in done.out.splitlines()] == ["5", "6", "7"]
    assert done.err.strip() == "events up to 5 are gone (retention)"


async def test_a_stream_that_never_said_where_it_starts_resumes_from_now_saying_so() -> None:
    """A connection dropped before any event or ``subscribed`` frame (a server without them) has
    no offset to resume from: watch starts again from now and says so on stderr."""
    asked: list[str | None] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        asked.append(request.query.get("since"))
        frames = [] if len(asked) == 1 else [event(1, "j1", "queued")]
        closing = WSCloseCode.GOING_AWAY if len(asked) == 1 else WSCloseCode.OK
        return await scripted(frames, closing)(request)

    async with fake_server([web.get("/v1/events", handler)]) as url:
        done = await jobwarden(url, "watch", "--json", env=WIDE)
    assert done.code == 0, done.err
    assert asked == [None, None]
    assert [json.loads(line)["id"] for line in done.out.splitlines()] == ["1"]
    assert "before the server said where the stream starts; resuming from now" in done.err


async def test_an_error_frame_on_the_stream_ends_the_command() -> None:
    """An error the server sends over the websocket is shown like any error answer."""
    frames = [json.dumps({"type": "tool_not_found", "message": "no tool named 'x'"})]
    async with fake_server([web.get("/v1/events", scripted(frames))]) as url:
        done = await jobwarden(url, "watch")
    assert done.code == 2
    assert done.err.strip() == "jobwarden: tool_not_found: no tool named 'x'"


async def test_a_job_stream_that_ends_early_is_a_failure() -> None:
    """`submit --wait` whose stream closes normally before the job's end exits 1 saying so."""
    routes = [
        web.post("/v1/jobs", answer(JOB, 202)),
        web.get("/v1/jobs/j1/events", scripted([event(1, "j1", "queued")])),
    ]
    async with fake_server(routes) as url:
        done = await jobwarden(url, "submit", "fake.tool", "--wait")
    assert done.code == 1
    assert done.err.splitlines()[-1] == "jobwarden: the event stream of job j1 ended early"


async def test_a_retried_job_shows_its_attempt() -> None:
    """A retry's new attempt is named in the progress lines (a reset on the way is skipped)."""
    frames: list[str | bytes] = [
        reset(0),
        event(1, "j1", "queued"),
        event(2, "j1", "running"),
        event(3, "j1", "queued", kind="retrying", attempt=2),
        event(4, "j1", "running", attempt=2),
        event(5, "j1", "succeeded", attempt=2, result=1),
    ]
    routes = [
        web.post("/v1/jobs", answer(JOB, 202)),
        web.get("/v1/jobs/j1/events", scripted(frames, close=WSCloseCode.OK)),
    ]
    async with fake_server(routes) as url:
        done = await jobwarden(url, "submit", "fake.tool", "--wait")
    assert done.code == 0, done.err
    assert done.err.splitlines()[:4] == [
        "job j1 queued",
        "job j1 running",
        "job j1 queued (attempt 2)",
        "job j1 running (attempt 2)",
    ]
    assert done.out.strip() == "1"


async def test_a_job_cancelled_before_it_ran_has_no_duration() -> None:
    """A job cancelled while queued exits 3; its summary has no running time."""
    frames: list[str | bytes] = [
        event(1, "j1", "queued"),
        event(2, "j1", "cancelled", error={"type": "cancelled", "message": "cancelled"}),
    ]
    routes = [
        web.post("/v1/jobs", answer(JOB, 202)),
        web.get("/v1/jobs/j1/events", scripted(frames)),
    ]
    async with fake_server(routes) as url:
        done = await jobwarden(url, "submit", "fake.tool", "--wait", "--json")
    assert done.code == 3
    assert done.err.splitlines()[-1] == "job j1 cancelled: cancelled: cancelled"
    assert json.loads(done.out)["error"]["type"] == "cancelled"


@pytest.mark.parametrize("job_id", ["a/b?c#d", "..", "%41"])
async def test_submit_wait_follows_a_job_whose_id_needs_encoding(job_id: str) -> None:
    """`submit --wait` reaches the event stream of a job whose id holds /, ?, #, % or is a dot
    segment, by percent-encoding it in the path (it reached another route, or none)."""
    frames = [event(1, job_id, "queued"), event(2, job_id, "succeeded", result="done")]

    async def events(request: web.Request) -> web.StreamResponse:
        if request.match_info["id"] != job_id:
            raise web.HTTPNotFound
        handler = scripted(frames)
        response: web.StreamResponse = await handler(request)
        return response

    accepted = {"job": {**JOB["job"], "id": job_id}}
    routes = [
        web.post("/v1/jobs", answer(accepted, 202)),
        web.get("/v1/jobs/{id}/events", events),
    ]
    async with fake_server(routes) as url:
        done = await jobwarden(url, "submit", "fake.tool", "--wait")
    assert done.code == 0, done.err
    assert done.err.splitlines()[-1].startswith(f"job {job_id} succeeded")
    assert done.out.strip() == '"done"'
