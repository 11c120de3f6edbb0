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
from tests.transport.conftest import KEYS, KEYS_TOML, auth

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


async def test_a_request_id_that_is_not_utf8_is_no_500_with_json_logs(tmp_path: Path) -> None:
    """With JSON logs, a job submitted with ``X-Request-ID: \\xff\\xfe`` (raw bytes) is answered
    200 under a new request id, and every line the server wrote is JSON."""
    env = clean_env(JOBWARDEN_KEYS=KEYS_TOML, PYTHONPATH=str(ROOT))
    args = ["--store", "memory://", "--log-format", "json", "--no-entry-points"]
    body = b'{"tool": "builtin.echo", "input": {"text": "x"}}'
    async with running_server(tmp_path, *args, env=env) as (process, base, log):
        host, port = base.removeprefix("http://").split(":")
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(
                b"POST /v1/jobs?wait=10 HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                b"Content-Type: application/json\r\nX-Request-ID: \xff\xfe\r\n"
                + f"Authorization: Bearer {KEYS['alice']}\r\n".encode()
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            answer = b""
            with anyio.fail_after(20):
                while True:
                    try:
                        answer += await stream.receive()
                    except anyio.EndOfStream:
                        break
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            assert await process.wait() == 0, output(log)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), answer
    assert json.loads(payload)["job"]["state"] == "succeeded"
    [request_id] = [
        line.split(b": ", 1)[1].decode()
        for line in head.split(b"\r\n")
        if line.startswith(b"X-Request-ID:")
    ]
    lines: list[dict[str, Any]] = [json.loads(line) for line in output(log).splitlines()]
    [access] = [
        line for line in lines if line["event"] == "request" and line["route"] == "/v1/jobs"
    ]
    assert (access["request_id"], access["status"]) == (request_id, 200)
    assert not [line for line in lines if line["level"] in ("error", "critical")]
