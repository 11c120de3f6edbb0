"""A corpus of bad requests: each answers its 4xx envelope, and the server stays intact."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import pytest
import yarl

from jobwarden.transport import ServerSettings
from tests.transport.conftest import Server, auth, expect_error, serve

pytestmark = pytest.mark.anyio

SMALL_LIMIT = ServerSettings(max_body_bytes=1024)
TIMEOUT = aiohttp.ClientTimeout(total=5)
SSE = {"Accept": "text/event-stream"}
JSON = "application/json"


@dataclass(frozen=True)
class Bad:
    """One bad request and the answer it must get.

    ``path`` may hold ``{job}`` (alice's existing job) or ``{bobs}`` (bob's); it is sent exactly
    as written (already percent-encoded). ``content_type=None`` sends no Content-Type at all.
    """

    name: str
    method: str
    path: str
    status: int
    type: str
    body: bytes | None = None
    content_type: str | None = JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    who: str | None = "alice"
    small_limit: bool = False


def submit(body: Any) -> bytes:
    """A POST /v1/jobs body: JSON-encoded unless already bytes."""
    return body if isinstance(body, bytes) else msgspec.json.encode(body)


def echo(**extra: Any) -> bytes:
    """A valid builtin.echo submission plus ``extra`` top-level members."""
    return submit({"tool": "builtin.echo", "input": {"text": "x"}, **extra})


def with_input(input: Any) -> bytes:
    """builtin.echo with the given input."""
    return submit({"tool": "builtin.echo", "input": input})


DEEP = 10_000
P, G = "POST", "GET"
BAD = 400, "invalid_request"
BAD_INPUT = 400, "invalid_input"

CORPUS: list[Bad] = [
    # --- the body is not a JSON object ---
    Bad("malformed-json", P, "/v1/jobs", *BAD, b'{"tool": '),
    Bad("trailing-garbage", P, "/v1/jobs", *BAD, echo() + b" x"),
    Bad("two-objects", P, "/v1/jobs", *BAD, echo() + echo()),
    Bad("string-body", P, "/v1/jobs", *BAD, b'"builtin.echo"'),
    Bad("array-body", P, "/v1/jobs", *BAD, b'[{"tool": "builtin.echo"}]'),
    Bad("number-body", P, "/v1/jobs", *BAD, b"42"),
    Bad("null-body", P, "/v1/jobs", *BAD, b"null"),
    Bad("empty-body", P, "/v1/jobs", *BAD, b""),
    Bad("whitespace-body", P, "/v1/jobs", *BAD, b"  \n "),
    Bad("single-quotes", P, "/v1/jobs", *BAD, b"{'tool': 'builtin.echo'}"),
    Bad("nan-literal", P, "/v1/jobs", *BAD, b'{"tool": "builtin.echo", "timeout_s": NaN}'),
    Bad("comment", P, "/v1/jobs", *BAD, b'{"tool": "builtin.echo" /* hi */}'),
    # --- wrong media type ---
    Bad("text-plain", P, "/v1/jobs", 415, "unsupported_media_type", echo(), "text/plain"),
    Bad(
        "form",
        P,
        "/v1/jobs",
        415,
        "unsupported_media_type",
        b"tool=builtin.echo",
        "application/x-www-form-urlencoded",
    ),
    Bad(
        "multipart",
        P,
        "/v1/jobs",
        415,
        "unsupported_media_type",
        b"--x--",
        "multipart/form-data; boundary=x",
    ),
    Bad("no-content-type", P, "/v1/jobs", 415, "unsupported_media_type", echo(), None),
    Bad(
        "json-lookalike", P, "/v1/jobs", 415, "unsupported_media_type", echo(), "application/jsonx"
    ),
    # --- the tool member ---
    Bad("missing-tool", P, "/v1/jobs", *BAD, submit({"input": {"text": "x"}})),
    Bad("tool-number", P, "/v1/jobs", *BAD, submit({"tool": 5, "input": {}})),
    Bad("tool-null", P, "/v1/jobs", *BAD, submit({"tool": None})),
    Bad("tool-object", P, "/v1/jobs", *BAD, submit({"tool": {"name": "builtin.echo"}})),
    Bad("tool-empty", P, "/v1/jobs", *BAD, submit({"tool": ""})),
    Bad("tool-overlong", P, "/v1/jobs", *BAD, submit({"tool": "a" * 201})),
    Bad("unknown-tool", P, "/v1/jobs", 404, "tool_not_found", submit({"tool": "nope.nope"})),
    Bad(
        "tool-with-nul", P, "/v1/jobs", 404, "tool_not_found", submit({"tool": "builtin.echo\x00"})
    ),
    Bad("tool-lone-surrogate", P, "/v1/jobs", *BAD, b'{"tool": "\\ud800"}'),
    Bad("unknown-member", P, "/v1/jobs", *BAD, echo(priority=1)),
    # --- the input member ---
    Bad("input-array", P, "/v1/jobs", *BAD_INPUT, with_input(["x"])),  # echo reads no array
    Bad("input-string", P, "/v1/jobs", *BAD, with_input("x")),
    Bad("input-null", P, "/v1/jobs", *BAD, with_input(None)),
    Bad("input-wrong-type", P, "/v1/jobs", *BAD_INPUT, with_input({"text": 5})),
    Bad("input-missing-field", P, "/v1/jobs", *BAD_INPUT, with_input({})),
    Bad("input-unknown-field", P, "/v1/jobs", *BAD_INPUT, with_input({"text": "x", "y": 1})),
    Bad(
        "input-out-of-range",
        P,
        "/v1/jobs",
        *BAD_INPUT,
        submit({"tool": "builtin.sleep", "input": {"seconds": -1}}),
    ),
    Bad(
        "input-not-base64",
        P,
        "/v1/jobs",
        *BAD_INPUT,
        submit({"tool": "builtin.sha256", "input": {"data": "%%%"}}),
    ),
    Bad(
        "huge-int-in-input",
        P,
        "/v1/jobs",
        *BAD_INPUT,
        b'{"tool": "builtin.echo", "input": {"text": 1' + b"0" * 400 + b"}}",
    ),
    Bad(
        "huge-float-in-input",
        P,
        "/v1/jobs",
        *BAD,
        b'{"tool": "builtin.echo", "input": {"text": 1e400}}',
    ),
    Bad(
        "deep-arrays-in-input",
        P,
        "/v1/jobs",
        *BAD,
        b'{"tool": "builtin.echo", "input": {"text": ' + b"[" * DEEP + b"]" * DEEP + b"}}",
    ),
    Bad(
        "deep-objects-in-input",
        P,
        "/v1/jobs",
        *BAD,
        b'{"tool": "builtin.echo", "input": ' + b'{"a": ' * DEEP + b"1" + b"}" * DEEP + b"}",
    ),
    Bad("deep-arrays-body", P, "/v1/jobs", *BAD, b"[" * DEEP + b"]" * DEEP),
    # --- bytes that are not JSON text ---
    Bad(
        "invalid-utf8-in-string",
        P,
        "/v1/jobs",
        *BAD,
        b'{"tool": "builtin.echo", "input": {"text": "\xff\xfe"}}',
    ),
    Bad("invalid-utf8-in-tool", P, "/v1/jobs", *BAD, b'{"tool": "builtin.\xc3\x28"}'),
    Bad("invalid-utf8-outside-strings", P, "/v1/jobs", *BAD, b"\xff" + echo()),
    Bad("raw-nul-in-string", P, "/v1/jobs", *BAD, b'{"tool": "builtin.echo\x00"}'),
    Bad("raw-nul-after-body", P, "/v1/jobs", *BAD, echo() + b"\x00"),
    Bad("utf16-body", P, "/v1/jobs", *BAD, echo().decode().encode("utf-16")),
    # --- timeout_s and idempotency_key ---
    Bad("timeout-negative", P, "/v1/jobs", *BAD, echo(timeout_s=-1)),
    Bad("timeout-zero", P, "/v1/jobs", *BAD, echo(timeout_s=0)),
    Bad("timeout-too-long", P, "/v1/jobs", *BAD, echo(timeout_s=86_401)),
    Bad("timeout-string-nan", P, "/v1/jobs", *BAD, echo(timeout_s="NaN")),
    Bad("timeout-bool", P, "/v1/jobs", *BAD, echo(timeout_s=True)),
    Bad("timeout-huge-float", P, "/v1/jobs", *BAD, b'{"tool": "builtin.echo", "timeout_s": 1e400}'),
    Bad(
        "timeout-huge-int",
        P,
        "/v1/jobs",
        *BAD,
        b'{"tool": "builtin.echo", "timeout_s": 1' + b"0" * 400 + b"}",
    ),
    Bad("idempotency-empty", P, "/v1/jobs", *BAD, echo(idempotency_key="")),
    Bad("idempotency-number", P, "/v1/jobs", *BAD, echo(idempotency_key=7)),
    Bad("idempotency-overlong", P, "/v1/jobs", *BAD, echo(idempotency_key="k" * 201)),
    # --- size ---
    Bad(
        "body-over-limit",
        P,
        "/v1/jobs",
        413,
        "payload_too_large",
        with_input({"text": "x" * 4096}),
        small_limit=True,
    ),
    Bad(
        "body-over-limit-by-one",
        P,
        "/v1/jobs",
        413,
        "payload_too_large",
        with_input({"text": "x" * (1025 - len(with_input({"text": ""})))}),
        small_limit=True,
    ),
    # --- routes and methods ---
    Bad("unknown-route", G, "/v1/nope", 404, "not_found"),
    Bad("dashboard-folder", G, "/dashboard/", 404, "not_found"),
    Bad("post-root", P, "/", 405, "method_not_allowed", echo()),
    Bad("v2", P, "/v2/jobs", 404, "not_found", echo()),
    Bad("trailing-slash", G, "/v1/tools/", 404, "not_found"),
    Bad("put-jobs", "PUT", "/v1/jobs", 405, "method_not_allowed", echo()),
    Bad("patch-job", "PATCH", "/v1/jobs/{job}", 405, "method_not_allowed", b"{}"),
    Bad("post-health", P, "/v1/health", 405, "method_not_allowed", b"{}"),
    Bad("delete-tools", "DELETE", "/v1/tools", 405, "method_not_allowed"),
    Bad("get-cancel", G, "/v1/jobs/{job}/cancel", 405, "method_not_allowed"),
    Bad("get-analyze", G, "/v1/analyze-execution", 405, "method_not_allowed"),
    # --- query parameters ---
    Bad("limit-zero", G, "/v1/jobs?limit=0", *BAD),
    Bad("limit-too-big", G, "/v1/jobs?limit=501", *BAD),
    Bad("limit-abc", G, "/v1/jobs?limit=abc", *BAD),
    Bad("limit-negative", G, "/v1/jobs?limit=-5", *BAD),
    Bad("limit-float", G, "/v1/jobs?limit=1e2", *BAD),
    Bad("limit-empty", G, "/v1/jobs?limit=", *BAD),
    Bad("limit-superscript-two", G, "/v1/jobs?limit=%C2%B2", *BAD),
    Bad("limit-huge", G, "/v1/jobs?limit=" + "9" * 5000, *BAD),
    Bad("state-bogus", G, "/v1/jobs?state=bogus", *BAD),
    Bad("state-uppercase", G, "/v1/jobs?state=QUEUED", *BAD),
    Bad("state-invalid-utf8", G, "/v1/jobs?state=%FF", *BAD),
    Bad("wait-negative", P, "/v1/jobs?wait=-1", *BAD, echo()),
    Bad("wait-abc", P, "/v1/jobs?wait=abc", *BAD, echo()),
    Bad("wait-nan", P, "/v1/jobs?wait=nan", *BAD, echo()),
    Bad("wait-too-long", P, "/v1/jobs?wait=3600", *BAD, echo()),
    Bad("since-abc", G, "/v1/events?since=abc", *BAD, headers=SSE),
    Bad("since-negative", G, "/v1/events?since=-1", *BAD, headers=SSE),
    Bad("since-superscript-two", G, "/v1/events?since=%C2%B2", *BAD, headers=SSE),
    Bad("since-past-max", G, "/v1/events?since=1000000000000000001", *BAD, headers=SSE),
    Bad("since-past-int64", G, "/v1/events?since=9223372036854775808", *BAD, headers=SSE),
    Bad("since-huge", G, "/v1/events?since=" + "9" * 5000, *BAD, headers=SSE),
    Bad(
        "last-event-id-past-max",
        G,
        "/v1/events",
        *BAD,
        headers={**SSE, "Last-Event-ID": "1000000000000000001"},
    ),
    Bad("last-event-id-abc", G, "/v1/events", *BAD, headers={**SSE, "Last-Event-ID": "abc"}),
    Bad(
        "last-event-id-too-long",
        G,
        "/v1/events",
        *BAD,
        headers={**SSE, "Last-Event-ID": "9" * 19},
    ),
    Bad("events-state-bogus", G, "/v1/events?state=bogus", *BAD, headers=SSE),
    Bad("job-since-abc", G, "/v1/jobs/{job}/events?since=abc", *BAD, headers=SSE),
    Bad("events-unknown-tool", G, "/v1/events?tool=no.such", 404, "tool_not_found", headers=SSE),
    Bad(
        "job-events-unknown-tool",
        G,
        "/v1/jobs/{job}/events?tool=no.such",
        404,
        "tool_not_found",
        headers=SSE,
    ),
    Bad("events-unknown-job", G, "/v1/events?job=nope", 404, "job_not_found", headers=SSE),
    Bad("events-someone-elses-job", G, "/v1/events?job={bobs}", 404, "job_not_found", headers=SSE),
    Bad("events-plain-get", G, "/v1/events", *BAD),
    Bad("seed-status-bogus", G, "/v1/analyze-execution/jobs?status=bogus", *BAD),
    Bad("seed-limit-zero", G, "/v1/analyze-execution/jobs?limit=0", *BAD),
    Bad("seed-limit-past-max", G, "/v1/analyze-execution/jobs?limit=501", *BAD),
    Bad("seed-cursor-bogus", G, "/v1/analyze-execution/jobs?cursor=12", *BAD),
    # --- job ids ---
    Bad("job-unknown", G, "/v1/jobs/does-not-exist", 404, "job_not_found"),
    Bad("job-long-id", G, "/v1/jobs/" + "f" * 5000, 404, "job_not_found"),
    Bad("job-nul-id", G, "/v1/jobs/%00", 404, "job_not_found"),
    Bad("job-traversal-id", G, "/v1/jobs/..%2F..%2Fetc%2Fpasswd", 404, "job_not_found"),
    Bad("job-invalid-utf8-id", G, "/v1/jobs/%FF%FE", 404, "job_not_found"),
    Bad("job-someone-elses", G, "/v1/jobs/{bobs}", 404, "job_not_found"),
    Bad("result-unknown", G, "/v1/jobs/nope/result", 404, "job_not_found"),
    Bad("cancel-unknown", P, "/v1/jobs/nope/cancel", 404, "job_not_found"),
    Bad("delete-unknown", "DELETE", "/v1/jobs/nope", 404, "job_not_found"),
    Bad("events-of-unknown-job", G, "/v1/jobs/nope/events", 404, "job_not_found", headers=SSE),
    Bad("tool-unknown", G, "/v1/tools/nope.nope", 404, "tool_not_found"),
    Bad("plugin-unknown", G, "/v1/plugins/nope/health", 404, "not_found"),
    # --- seed routes ---
    Bad(
        "seed-bad-base64",
        P,
        "/v1/analyze-execution",
        *BAD,
        submit({"plugin": "imaging", "image": "!!", "mime_type": "image/png"}),
    ),
    Bad(
        "seed-unknown-plugin",
        P,
        "/v1/analyze-execution/async",
        404,
        "not_found",
        submit({"plugin": "nope", "image": "", "mime_type": "image/png"}),
    ),
    Bad(
        "seed-wrong-input",
        P,
        "/v1/analyze-execution",
        *BAD_INPUT,
        submit({"plugin": "builtin", "image": "", "mime_type": "a/b"}),
    ),
    Bad("seed-malformed", P, "/v1/analyze-execution", *BAD, b"{"),
    Bad(
        "seed-text-plain",
        P,
        "/v1/analyze-execution",
        415,
        "unsupported_media_type",
        b"{}",
        "text/plain",
    ),
    # --- keys and scopes ---
    Bad("no-key", P, "/v1/jobs", 401, "unauthorized", echo(), who=None),
    Bad("reader-submits", P, "/v1/jobs", 403, "forbidden", echo(), who="reader"),
    Bad("reader-cancels", P, "/v1/jobs/{job}/cancel", 403, "forbidden", who="reader"),
]
assert len(CORPUS) >= 40
assert len({bad.name for bad in CORPUS}) == len(CORPUS)


class Baseline(msgspec.Struct):
    """The jobs that exist before the corpus runs, as the admin sees them."""

    alices: dict[str, Any]
    bobs: dict[str, Any]


async def _baseline(srv: Server) -> Baseline:
    alices = await srv.hold("alice", "baseline", timeout_s=3600)
    bobs = await srv.submit("bob", "builtin.echo", {"text": "bob's"}, wait=5)
    return Baseline(alices=alices, bobs=bobs)


async def _send(srv: Server, bad: Bad, base: Baseline) -> dict[str, Any]:
    path = bad.path.format(job=base.alices["id"], bobs=base.bobs["id"])
    headers = {**(auth(bad.who) if bad.who else {}), **bad.headers}
    skip: list[str] = []
    if bad.content_type is None:
        skip.append("Content-Type")
    elif bad.body is not None:
        headers["Content-Type"] = bad.content_type
    async with srv.http.request(
        bad.method,
        yarl.URL(srv.url(path), encoded=True),
        data=bad.body,
        headers=headers,
        skip_auto_headers=skip,
        timeout=TIMEOUT,
    ) as resp:
        error = await expect_error(resp, bad.status, bad.type)
        if bad.status == 405:
            assert resp.headers.get("Allow"), "405 without an Allow header"
        return error


async def _check_intact(srv: Server, base: Baseline) -> None:
    """The jobs from before are unchanged, no job was added, and a normal job still succeeds."""
    listing = await srv.get_json("admin", "/v1/jobs")
    assert [j["id"] for j in listing["jobs"]] == [base.bobs["id"], base.alices["id"]]
    assert await srv.job("admin", base.bobs["id"]) == base.bobs
    alices = await srv.job("alice", base.alices["id"])
    assert alices["state"] == "running"
    assert {k: v for k, v in alices.items() if k not in {"state", "started_at"}} == {
        k: v for k, v in base.alices.items() if k not in {"state", "started_at"}
    }
    done = await srv.submit("alice", "builtin.echo", {"text": "still fine"}, wait=5)
    assert done["state"] == "succeeded"
    assert done["result"] == {"text": "still fine"}
    srv.gates.open("baseline")
    assert (await srv.finished(base.alices["id"]))["result"] == {"text": "baseline"}
    final = await srv.get_json("admin", "/v1/jobs")
    assert [j["id"] for j in final["jobs"]] == [done["id"], base.bobs["id"], base.alices["id"]]


@pytest.mark.parametrize("bad", CORPUS, ids=[bad.name for bad in CORPUS])
async def test_bad_request_answers_its_envelope_and_changes_nothing(bad: Bad) -> None:
    """The bad request answers its 4xx envelope, creates no job, and the server keeps working."""
    async with serve(settings=SMALL_LIMIT if bad.small_limit else None) as srv:
        base = await _baseline(srv)
        await _send(srv, bad, base)
        await _check_intact(srv, base)


async def test_the_whole_corpus_in_one_server_leaves_it_intact() -> None:
    """After every bad request in turn, the same server lists the same jobs and runs new ones."""
    for small_limit in (False, True):
        cases = [bad for bad in CORPUS if bad.small_limit == small_limit]
        async with serve(settings=SMALL_LIMIT if small_limit else None) as srv:
            base = await _baseline(srv)
            failures: list[str] = []
            for bad in cases:
                try:
                    await _send(srv, bad, base)
                except (AssertionError, aiohttp.ClientError, TimeoutError) as exc:
                    failures.append(f"{bad.name}: {exc!r}"[:300])
            await _check_intact(srv, base)
            assert not failures, "\n".join(failures)
