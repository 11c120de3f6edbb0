"""`jobwarden watch` against a real server: rows, JSON lines, filters, Ctrl-C and reconnecting."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio
import pytest

from tests.cli.conftest import (
    FORCED_TERMINAL,
    SERVER_ARGS,
    Lines,
    background,
    finish,
    jobwarden,
    server_env,
)
from tests.cli.tcp_proxy import tcp_proxy
from tests.server_process import free_port, running_server

pytestmark = pytest.mark.anyio

STEPS = json.dumps({"messages": ["one", "two"]})


async def _finished_job(server: str, tool: str, input: str = '{"text": "t"}') -> str:
    done = await jobwarden(server, "submit", tool, "--input", input, "--wait")
    return done.err.split()[1]


async def test_watch_job_prints_a_line_per_event_and_ends(server: str) -> None:
    """`watch --job` off a terminal prints one line per event and exits 0 after the last one."""
    job_id = await _finished_job(server, "clitest.steps", STEPS)
    done = await jobwarden(server, "watch", "--job", job_id)
    lines = [line.split(maxsplit=1)[1] for line in done.out.splitlines()]
    assert done.code == 0, done.err
    assert lines == [
        f"{job_id}  clitest.steps  queued",
        f"{job_id}  clitest.steps  running",
        f"{job_id}  clitest.steps  running  50%  one",
        f"{job_id}  clitest.steps  running  100%  two",
        f"{job_id}  clitest.steps  succeeded  100%",
    ]


async def test_watch_shows_a_failed_jobs_error(server: str) -> None:
    """A failed job's error is on its last line off a terminal, and in its row on one."""
    job_id = await _finished_job(server, "clitest.fail", '{"text": "bad"}')
    lines = await jobwarden(server, "watch", "--job", job_id)
    table = await jobwarden(server, "watch", "--job", job_id, env=FORCED_TERMINAL)
    assert lines.code == table.code == 0
    assert lines.out.splitlines()[-1].endswith("failed  plugin_error: ToolBroke: bad")
    assert "plugin_error: ToolBroke: bad" in table.out.rsplit("\x1b[2K", 1)[-1]


async def test_watch_job_json_is_one_cloudevent_per_line(server: str) -> None:
    """`watch --job --json` prints the job's CloudEvents, one per line, ending with the last."""
    job_id = await _finished_job(server, "clitest.fail", '{"text": "no"}')
    done = await jobwarden(server, "watch", "--job", job_id, "--json")
    events = [json.loads(line) for line in done.out.splitlines()]
    assert done.code == 0, done.err
    assert [e["type"].removeprefix("jobwarden.job.") for e in events] == [
        "queued",
        "running",
        "failed",
    ]
    assert {e["subject"] for e in events} == {job_id}
    assert all(e["specversion"] == "1.0" for e in events)
    assert events[-1]["data"]["error"]["type"] == "plugin_error"
    assert [int(e["id"]) for e in events] == sorted(int(e["id"]) for e in events)


async def test_watch_job_draws_a_table_on_a_terminal(server: str) -> None:
    """On a (forced) terminal the final table has the job's row: state, progress, last message."""
    job_id = await _finished_job(server, "clitest.steps", STEPS)
    done = await jobwarden(server, "watch", "--job", job_id, env=FORCED_TERMINAL)
    last_frame = done.out.rsplit("\x1b[2K", 1)[-1]
    assert done.code == 0, done.err
    for text in ("ID", "TOOL", "STATE", "PROGRESS", "DURATION", "MESSAGE"):
        assert text in done.out
    assert job_id in last_frame
    assert "succeeded" in last_frame
    assert "100%" in last_frame
    assert "two" in last_frame


async def test_watch_job_follows_a_live_job_to_its_end(server: str) -> None:
    """`watch --job` of a running job shows it live and ends once it is cancelled."""
    submitted = await jobwarden(server, "submit", "clitest.hang")
    job_id = submitted.out.strip()
    async with background(server, "watch", "--job", job_id, "--json") as watching:
        lines = Lines(watching.stdout)
        await lines.until(lambda line: json.loads(line)["data"]["message"] == "hanging")
        await jobwarden(server, "cancel", job_id)
        last = await lines.until(lambda line: "cancelled" in json.loads(line)["type"])
        assert await finish(watching) == 0
    assert json.loads(last)["data"]["error"]["type"] == "cancelled"


async def test_watch_tool_shows_only_that_tool_until_ctrl_c(server: str) -> None:
    """`watch --tool` shows that tool's events (replayed with --since 0, then live); Ctrl-C: 0."""
    await _finished_job(server, "clitest.fail")
    first = await _finished_job(server, "clitest.echo")
    async with background(
        server, "watch", "--tool", "clitest.echo", "--since", "0", "--json"
    ) as watching:
        lines = Lines(watching.stdout)
        await lines.until(lambda line: json.loads(line)["type"].endswith(".succeeded"))
        await _finished_job(server, "clitest.fail")
        second = await _finished_job(server, "clitest.echo")
        await lines.until(lambda line: json.loads(line)["type"].endswith(".succeeded"))
        watching.send_signal(signal.SIGINT)
        code = await finish(watching)
    events: list[dict[str, Any]] = [json.loads(line) for line in lines.seen]
    assert code == 0
    assert {e["data"]["tool"] for e in events} == {"clitest.echo"}
    assert [e["subject"] for e in events if e["type"].endswith(".succeeded")] == [first, second]


async def test_watch_state_filter(server: str) -> None:
    """`watch --state failed` shows only events entering that state."""
    failed = await _finished_job(server, "clitest.fail")
    await _finished_job(server, "clitest.echo")
    async with background(
        server, "watch", "--state", "failed", "--since", "0", "--json"
    ) as watching:
        lines = Lines(watching.stdout)
        await lines.next()
        await _finished_job(server, "clitest.echo")
        again = await _finished_job(server, "clitest.fail")
        await lines.next()
        watching.send_signal(signal.SIGINT)
        assert await finish(watching) == 0
    events = [json.loads(line) for line in lines.seen]
    assert [(e["subject"], e["data"]["state"]) for e in events] == [
        (failed, "failed"),
        (again, "failed"),
    ]


async def _subscribed(server: str) -> None:
    """Return once the server has an event subscriber (a watch that is listening)."""
    async with aiohttp.ClientSession() as http:
        with anyio.fail_after(20):
            while True:
                async with http.get(server + "/v1/metrics") as resp:
                    if (await resp.json())["supervisor"]["subscribers"]:
                        return
                # Another process's state, seen only by asking: nothing here to wait on.
                await anyio.sleep(0.05)


async def test_watch_state_alone_shows_live_events(server: str) -> None:
    """`watch --state running` with no other filter and no --since subscribes, and shows the
    running events of jobs submitted after it started."""
    async with background(server, "watch", "--state", "running", "--json") as watching:
        await _subscribed(server)
        job_id = await _finished_job(server, "clitest.echo")
        line = await Lines(watching.stdout).next()
        watching.send_signal(signal.SIGINT)
        assert await finish(watching) == 0
    assert (json.loads(line)["subject"], json.loads(line)["data"]["state"]) == (job_id, "running")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--job", "0123456789abcdef"), "job_not_found: no job '0123456789abcdef'"),
        (("--job", "a/b?c#d"), "job_not_found: no job 'a/b?c#d'"),
        (("--job", ".."), "job_not_found: no job '..'"),
        (("--tool", "nope.tool"), "tool_not_found: no tool named 'nope.tool'"),
        (("--state", "asleep"), "'asleep' is not one of"),
        (("--since", "-1"), "-1 is not in the range"),
    ],
)
async def test_watch_of_something_unknown_is_a_usage_error(
    server: str, args: tuple[str, ...], message: str
) -> None:
    """An unknown job (its id percent-encoded, dot segments too) or tool (asked of the
    server), state or offset exits 2."""
    done = await jobwarden(server, "watch", *args)
    assert done.code == 2
    assert message in done.err


async def test_watch_resumes_after_the_server_restarts(tmp_path: Path) -> None:
    """When the server goes away and comes back, watch reconnects with `since`: no event is
    missed or repeated, and stderr says it resumed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = (*SERVER_ARGS[2:], "--store", "sqlite:///jobs.db")
    async with (
        running_server(tmp_path, *args, env=server_env(), port=port) as (first_server, _, _),
        background(url, "watch", "--since", "0", "--json") as watching,
    ):
        lines = Lines(watching.stdout)
        before = await _finished_job(url, "clitest.echo")
        await lines.until(lambda line: json.loads(line)["type"].endswith(".succeeded"))
        first_server.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            await first_server.wait()
        async with running_server(
            tmp_path, *args, env=server_env(), log_name="again.log", port=port
        ):
            after = await _finished_job(url, "clitest.echo")
            await lines.until(lambda line: after in line and ".succeeded" in line)
            watching.send_signal(signal.SIGINT)
            assert await finish(watching) == 0
            assert watching.stderr is not None
            err = (await watching.stderr.receive()).decode()
    events = [json.loads(line) for line in lines.seen]
    offsets = [int(e["id"]) for e in events]
    assert offsets == sorted(set(offsets))
    assert [e["subject"] for e in events if e["type"].endswith(".succeeded")] == [before, after]
    assert "connection lost; resuming after event" in err


async def _echo(server: str, text: str) -> str:
    """Run a clitest.echo job on ``server`` to its end over HTTP; its id."""
    body = {"tool": "clitest.echo", "input": {"text": text}}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server}/v1/jobs?wait=10", json=body) as resp,
    ):
        job: dict[str, Any] = (await resp.json())["job"]
    assert job["state"] == "succeeded", job
    return str(job["id"])


async def test_a_watch_dropped_before_any_event_resumes_where_its_stream_started(
    server: str,
) -> None:
    """A connection dropped before any event resumes from where the server said the stream
    starts: a job that ran while the watch was reconnecting is shown, exactly once."""
    upstream = urlsplit(server)
    assert upstream.hostname is not None
    assert upstream.port is not None
    async with (
        tcp_proxy((upstream.hostname, upstream.port)) as proxy,
        background(proxy.url, "watch", "--json") as watching,
    ):
        with anyio.fail_after(20):
            await proxy.wait_sent(b'{"type":"subscribed"')
        proxy.hold()  # the watch's reconnection waits while the job runs
        proxy.cut()
        missed = await _echo(server, "while reconnecting")
        proxy.release()
        after = await _echo(server, "after")
        lines = Lines(watching.stdout)
        await lines.until(lambda line: after in line and ".succeeded" in line)
        watching.send_signal(signal.SIGINT)
        assert await finish(watching) == 0
        assert watching.stderr is not None
        err = (await watching.stderr.receive()).decode()
    events = [json.loads(line) for line in lines.seen]
    assert [(e["subject"], e["type"].removeprefix("jobwarden.job.")) for e in events] == [
        (missed, "queued"),
        (missed, "running"),
        (missed, "succeeded"),
        (after, "queued"),
        (after, "running"),
        (after, "succeeded"),
    ]
    assert "connection lost; resuming after event" in err
    assert "resuming from now" not in err
