"""The seed routes reaching the real ``imaging`` plugin over HTTP, sync and async, with Pillow
and without it."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterable
from typing import Any

import pytest

from jobwarden import Plugin, builtin
from jobwarden.plugins.imaging import INSTALL_HINT, imaging
from tests.fakes import Gates
from tests.images import red_and_blue_png
from tests.transport.conftest import Server, auth, expect_error, serve

pytestmark = pytest.mark.anyio

PNG_B64 = base64.b64encode(red_and_blue_png()).decode()
SUMMARY = {
    "format": "PNG",
    "mime_type": "image/png",
    "width": 4,
    "height": 2,
    "mode": "RGB",
    "mean": {"R": 127.5, "G": 0.0, "B": 127.5},
}


def shipped(gates: Gates) -> Iterable[Plugin]:
    """The plugins ``jobwarden serve`` loads by default."""
    return [builtin, imaging]


def seed(mime_type: str = "image/png") -> dict[str, Any]:
    """A seed request for the imaging plugin, naming no tool."""
    return {"plugin": "imaging", "image": PNG_B64, "mime_type": mime_type}


async def post(srv: Server, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """POST ``body`` as alice; the status and the JSON answer."""
    async with srv.http.post(srv.url(path), json=body, headers=auth("alice")) as resp:
        return resp.status, await resp.json()


async def test_sync_seed_request_runs_imaging_inspect() -> None:
    """POST /v1/analyze-execution with plugin imaging runs imaging.inspect: 200, done, summary."""
    async with serve(plugins=shipped) as srv:
        status, body = await post(srv, "/v1/analyze-execution", seed())
        job = await srv.job("alice", body["job_id"])
    assert status == 200
    assert (body["plugin"], body["status"], body["error"]) == ("imaging", "done", None)
    assert {k: body["result"][k] for k in SUMMARY} == SUMMARY
    assert len(body["result"]["dominant"]) == 2
    assert job["tool"] == "imaging.inspect"
    assert job["input"] == {"image_bytes": PNG_B64, "mime_type": "image/png"}


async def test_async_seed_request_then_status_and_result() -> None:
    """/async answers the job id; the status then shows done and the result route the summary."""
    async with serve(plugins=shipped) as srv:
        status, accepted = await post(srv, "/v1/analyze-execution/async", seed())
        job_id = accepted["job_id"]
        await srv.sup.wait(job_id, timeout=60)
        shown = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{job_id}")
        result = await srv.get_json("alice", f"/v1/analyze-execution/jobs/{job_id}/result")
    assert status == 202
    assert shown["job"]["status"] == "done"
    assert (result["plugin"], result["status"], result["error"]) == ("imaging", "done", None)
    assert {k: result["result"][k] for k in SUMMARY} == SUMMARY


async def test_mime_mismatch_over_the_seed_route_is_status_error() -> None:
    """A PNG sent as image/jpeg answers status error with plugin_error saying what it is."""
    async with serve(plugins=shipped) as srv:
        status, body = await post(srv, "/v1/analyze-execution", seed("image/jpeg"))
    assert status == 200
    assert (body["status"], body["result"]) == ("error", None)
    assert body["error"]["type"] == "plugin_error"
    assert body["error"]["message"] == (
        "ImageRejected: mime_type is image/jpeg but the bytes are a PNG image"
    )


async def test_unsupported_mime_type_is_refused_before_any_job() -> None:
    """A MIME type imaging does not read answers 400 invalid_input and creates no job."""
    async with serve(plugins=shipped) as srv:
        async with srv.http.post(
            srv.url("/v1/analyze-execution"), json=seed("text/plain"), headers=auth("alice")
        ) as resp:
            error = await expect_error(resp, 400, "invalid_input")
        listing = await srv.get_json("admin", "/v1/jobs")
    assert error["tool"] == "imaging.inspect"
    assert listing["jobs"] == []


async def test_without_pillow_the_seed_route_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without Pillow, imaging is listed failed and a seed request answers 404 with the hint."""
    monkeypatch.setitem(sys.modules, "PIL", None)
    async with serve(plugins=shipped) as srv:
        async with srv.http.post(
            srv.url("/v1/analyze-execution"), json=seed(), headers=auth("alice")
        ) as resp:
            error = await expect_error(resp, 404, "tool_not_found")
        health = await srv.get_json("alice", "/v1/plugins/imaging/health")
    assert INSTALL_HINT in error["message"]
    assert error["details"] == {"reason": "plugin_failed"}
    assert health["state"] == "failed"
    assert INSTALL_HINT in health["reason"]
