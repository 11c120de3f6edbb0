"""`jobwarden serve --log-format json`: JSON lines, each carrying the context it was logged in."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from tests.server_process import clean_env, output, running_server
from tests.transport.conftest import KEYS_TOML, auth

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]
JOB_KEYS = {"job_id", "tool", "attempt"}


async def test_json_lines_carry_request_principal_and_job(tmp_path: Path) -> None:
    """The access line has the request id, principal and job; the lines a tool logs (structlog
    or stdlib, loop or thread) have its job id, tool and attempt; no other line has a job."""
    env = clean_env(JOBWARDEN_KEYS=KEYS_TOML, PYTHONPATH=str(ROOT))
    args = ["--store", "memory://", "--log-format", "json", "--no-entry-points"]
    args += ["--plugin", "tests.log_plugin:chatty"]
    jobs: dict[str, str] = {}
    async with running_server(tmp_path, *args, env=env) as (process, base, log):
        async with aiohttp.ClientSession() as http:
            for tool in ("chatty.say", "chatty.say_in_thread"):
                headers = {**auth("alice"), "X-Request-ID": f"req-{tool}"}
                async with http.post(
                    base + "/v1/jobs?wait=10", json={"tool": tool, "input": {}}, headers=headers
                ) as resp:
                    assert resp.status == 200
                    job = (await resp.json())["job"]
                    assert job["state"] == "succeeded"
                    jobs[tool] = job["id"]
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await process.wait() == 0, output(log)
    lines: list[dict[str, Any]] = [json.loads(line) for line in output(log).splitlines()]

    for tool, job_id in jobs.items():
        [access] = [
            line
            for line in lines
            if line["event"] == "request" and line["request_id"] == f"req-{tool}"
        ]
        assert access["principal"] == "alice"
        assert (access["job_id"], access["tool"]) == (job_id, tool)
        assert access["route"] == "/v1/jobs"
    by_event = {line["event"]: line for line in lines}
    for event, tool in (
        ("structlog line", "chatty.say"),
        ("ctx line", "chatty.say"),
        ("stdlib line hello", "chatty.say"),
        ("thread line", "chatty.say_in_thread"),
        ("thread stdlib line hello", "chatty.say_in_thread"),
    ):
        line = by_event[event]
        assert {key: line[key] for key in JOB_KEYS} == {
            "job_id": jobs[tool],
            "tool": tool,
            "attempt": 1,
        }, line
        assert "request_id" not in line  # the job runs on a runner's task, not the request's
    assert by_event["stdlib line hello"]["logger"] == "chatty.stdlib"
    assert by_event["stdlib line hello"]["level"] == "warning"
    for event in ("serving", "stopping"):
        assert not JOB_KEYS & set(by_event[event]), by_event[event]
