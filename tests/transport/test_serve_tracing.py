"""`jobwarden serve --tracing` (or JOBWARDEN_TRACING=1): spans exported where OTEL_* says."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.server_process import clean_env, output, running_server

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("switch", ["flag", "env"])
async def test_serve_exports_a_job_s_spans_to_the_console(tmp_path: Path, switch: str) -> None:
    """With the console exporter, a job's four spans are printed as JSON by the time the server
    has stopped, all in one trace and carrying the job id."""
    env = clean_env(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="jw-test")
    args = ["--store", "memory://", "--no-entry-points", "--log-format", "json"]
    if switch == "flag":
        args.append("--tracing")
    else:
        env["JOBWARDEN_TRACING"] = "1"
    async with running_server(tmp_path, *args, env=env) as (process, base, log):
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                base + "/v1/jobs?wait=10", json={"tool": "builtin.echo", "input": {"text": "t"}}
            ) as resp,
        ):
            job = (await resp.json())["job"]
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await process.wait() == 0, output(log)
    spans = _printed_spans(output(log))
    mine = [s for s in spans if s["attributes"].get("jobwarden.job.id") == job["id"]]
    names = sorted(s["name"] for s in mine)
    assert names == ["jobwarden.execute", "jobwarden.job", "jobwarden.queue", "jobwarden.submit"]
    assert len({s["context"]["trace_id"] for s in mine}) == 1
    assert {s["resource"]["attributes"]["service.name"] for s in mine} == {"jw-test"}


def _printed_spans(text: str) -> list[dict[str, Any]]:
    """The JSON objects the console exporter printed (indented, over many lines) among the JSON
    log lines (one line each)."""
    decoder = json.JSONDecoder()
    spans: list[dict[str, Any]] = []
    at = 0
    while (start := text.find("{\n", at)) != -1:
        span, at = decoder.raw_decode(text, start)
        spans.append(span)
    return spans
