"""`jobwarden submit` against a real server: results, failures, timeouts, cancels and progress."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.cli.conftest import FORCED_TERMINAL, Lines, background, finish, jobwarden

pytestmark = pytest.mark.anyio

STEPS = json.dumps({"messages": ["alpha", "beta", "gamma"]})


async def test_wait_prints_the_result_and_exits_0(server: str) -> None:
    """--wait prints the result on stdout (indented, or one JSON line with --json) and exits 0."""
    pretty = await jobwarden(
        server, "submit", "clitest.echo", "--input", '{"text": "hi"}', "--wait"
    )
    machine = await jobwarden(
        server, "submit", "clitest.echo", "--input", '{"text": "hi"}', "--wait", "--json"
    )
    assert pretty.code == 0, pretty.err
    assert json.loads(pretty.out) == {"text": "hi"}
    assert pretty.out.count("\n") > 1
    assert "succeeded" in pretty.err
    assert machine.code == 0, machine.err
    assert machine.out.splitlines() == ['{"text":"hi"}']


async def test_without_wait_the_job_id_is_printed_once_accepted(server: str) -> None:
    """Without --wait, stdout is the new job's id (the job document with --json); exit 0."""
    plain = await jobwarden(server, "submit", "clitest.hang")
    machine = await jobwarden(server, "submit", "clitest.hang", "--json")
    listed = json.loads((await jobwarden(server, "jobs", "--json")).out)
    job = json.loads(machine.out)["job"]
    assert plain.code == 0, plain.err
    assert machine.code == 0, machine.err
    assert job["tool"] == "clitest.hang"
    assert [j["id"] for j in listed["jobs"]] == [job["id"], plain.out.strip()]


async def test_a_failed_job_exits_1_with_its_error_envelope(server: str) -> None:
    """A job the tool fails exits 1; stdout is its error envelope, stderr a one-line summary."""
    done = await jobwarden(
        server, "submit", "clitest.fail", "--input", '{"text": "boom"}', "--wait", "--json"
    )
    error = json.loads(done.out)["error"]
    assert done.code == 1, done.err
    assert error["type"] == "plugin_error"
    assert "boom" in error["message"]
    assert "failed" in done.err
    assert "plugin_error" in done.err


async def test_a_job_over_its_timeout_exits_3(server: str) -> None:
    """--timeout is the job's time limit: the server times the job out and the command exits 3."""
    done = await jobwarden(server, "submit", "clitest.hang", "--wait", "--timeout", "0.2", "--json")
    assert done.code == 3, done.err
    assert json.loads(done.out)["error"]["type"] == "timeout"
    assert "timed_out" in done.err


async def test_a_job_cancelled_while_waiting_exits_3(server: str) -> None:
    """`cancel` from another process ends a `submit --wait` with exit 3 and the cancel envelope."""
    async with background(server, "submit", "clitest.hang", "--wait", "--json") as waiting:
        progress = Lines(waiting.stderr)
        running = await progress.until(lambda line: line.endswith("hanging"))
        job_id = running.split()[1]
        cancel = await jobwarden(server, "cancel", job_id)
        code = await finish(waiting)
        assert waiting.stdout is not None
        out = (await waiting.stdout.receive()).decode()
    assert cancel.code == 0, cancel.err
    assert cancel.out.strip() == f"job {job_id} cancelled"
    assert code == 3, progress.seen
    assert json.loads(out)["error"]["type"] == "cancelled"


async def test_progress_is_drawn_as_a_live_bar_on_a_terminal(server: str) -> None:
    """On a (forced) terminal, stderr draws the bar with each fraction and message in turn."""
    done = await jobwarden(
        server, "submit", "clitest.steps", "--input", STEPS, "--wait", "--json", env=FORCED_TERMINAL
    )
    assert done.code == 0, done.err
    assert json.loads(done.out) == {"steps": 3}
    for text in (" 33%", "alpha", " 67%", "beta", "100%", "gamma", "━"):
        assert text in done.err
    assert done.err.index("alpha") < done.err.index("beta") < done.err.index("gamma")


async def test_progress_is_plain_lines_off_a_terminal(server: str) -> None:
    """Off a terminal, stderr has one line per state change and progress report, in order."""
    done = await jobwarden(server, "submit", "clitest.steps", "--input", STEPS, "--wait")
    job_id = done.err.split()[1]
    assert done.code == 0, done.err
    assert done.err.splitlines()[:5] == [
        f"job {job_id} queued",
        f"job {job_id} running",
        f"job {job_id} 33% alpha",
        f"job {job_id} 67% beta",
        f"job {job_id} 100% gamma",
    ]
    assert done.err.splitlines()[5].startswith(f"job {job_id} succeeded in ")
    assert "\x1b[" not in done.err + done.out


async def test_input_from_a_file_or_stdin(server: str, tmp_path: Path) -> None:
    """--input-file reads a JSON file, and `--input-file -` reads stdin."""
    path = tmp_path / "input.json"
    path.write_text('{"text": "from a file"}')
    from_file = await jobwarden(
        server, "submit", "clitest.echo", "--input-file", str(path), "--wait", "--json"
    )
    from_stdin = await jobwarden(
        server,
        "submit",
        "clitest.echo",
        "--input-file",
        "-",
        "--wait",
        "--json",
        stdin=b'{"text": "from stdin"}',
    )
    assert json.loads(from_file.out) == {"text": "from a file"}
    assert json.loads(from_stdin.out) == {"text": "from stdin"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--input", "{not json"), "not valid JSON"),
        (("--input", '"text"'), "must be a JSON object or array, not a string"),
        (("--input", "1.5"), "not a number"),
        (("--input", "null"), "not null"),
        (("--input", "true"), "not true"),
        (("--input", "{}", "--input-file", "-"), "not both"),
        (("--input-file", "/nonexistent/input.json"), "No such file"),
        (("--timeout", "0"), "--timeout"),
    ],
)
async def test_bad_input_is_a_usage_error_and_creates_no_job(
    server: str, args: tuple[str, ...], message: str
) -> None:
    """Invalid JSON, neither an object nor an array, both input flags, a missing file or a bad
    timeout exit 2."""
    done = await jobwarden(server, "submit", "clitest.echo", *args, "--wait")
    listed = json.loads((await jobwarden(server, "jobs", "--json")).out)
    assert done.code == 2, done.err
    assert message in done.err
    assert done.out == ""
    assert listed["jobs"] == []


async def test_an_array_input_reaches_a_tool_whose_input_is_array_like(
    server: str, tmp_path: Path
) -> None:
    """A JSON array, from --input or --input-file, runs a tool whose input type is array_like."""
    path = tmp_path / "input.json"
    path.write_text('[2, "b"]')
    inline = await jobwarden(server, "submit", "clitest.pair", "--input", '[1, "a"]', "--wait")
    from_file = await jobwarden(
        server, "submit", "clitest.pair", "--input-file", str(path), "--wait", "--json"
    )
    assert inline.code == 0, inline.err
    assert json.loads(inline.out) == "1a"
    assert from_file.code == 0, from_file.err
    assert json.loads(from_file.out) == "2b"


async def test_an_array_for_an_object_input_is_the_servers_usage_error(server: str) -> None:
    """An array for a tool whose input is an object is sent, and refused by the server (exit 2)."""
    done = await jobwarden(server, "submit", "clitest.echo", "--input", '["hi"]', "--wait")
    assert done.code == 2, done.err
    assert done.err.startswith("jobwarden: invalid_input: ")
    assert done.out == ""


async def test_an_input_file_that_is_not_utf8_is_a_usage_error(server: str) -> None:
    """An input file (here stdin) holding bytes that are not UTF-8 exits 2 saying where, instead
    of a UnicodeDecodeError traceback."""
    done = await jobwarden(
        server, "submit", "clitest.echo", "--input-file", "-", stdin=b'{"text": "caf\xe9"}'
    )
    assert done.code == 2, done.err
    assert done.err.splitlines()[-1] == (
        "Error: Invalid value for --input-file: not valid JSON: byte 0xe9 at offset 13 is not UTF-8"
    )
    assert done.out == ""


async def test_input_the_server_refuses_is_a_usage_error(server: str) -> None:
    """A 400 invalid_input from the server exits 2 with the server's message."""
    done = await jobwarden(server, "submit", "clitest.echo", "--input", '{"text": 1}', "--wait")
    assert done.code == 2
    assert done.err.strip() == "jobwarden: invalid_input: Expected `str`, got `int` - at `$.text`"
    assert done.out == ""


async def test_an_unknown_tool_is_a_usage_error(server: str) -> None:
    """A tool the server does not have exits 2 with tool_not_found."""
    done = await jobwarden(server, "submit", "nope.tool", "--wait")
    assert done.code == 2
    assert done.err.strip() == "jobwarden: tool_not_found: no tool named 'nope.tool'"


async def test_an_idempotency_key_submits_once(server: str) -> None:
    """Two submits under one --idempotency-key answer the same job."""
    first = await jobwarden(server, "submit", "clitest.hang", "--idempotency-key", "k1")
    second = await jobwarden(server, "submit", "clitest.hang", "--idempotency-key", "k1")
    assert first.code == second.code == 0
    assert first.out == second.out


async def test_ctrl_c_while_waiting_exits_130_and_leaves_the_job_running(server: str) -> None:
    """Ctrl-C stops waiting (exit 130, saying so) without cancelling the job on the server."""
    async with background(server, "submit", "clitest.hang", "--wait") as waiting:
        progress = Lines(waiting.stderr)
        running = await progress.until(lambda line: line.endswith("hanging"))
        waiting.send_signal(signal.SIGINT)
        said = await progress.next()
        code = await finish(waiting)
    assert said == "jobwarden: interrupted"
    listed = json.loads((await jobwarden(server, "jobs", "--json")).out)
    assert code == 130
    assert [(j["id"], j["state"]) for j in listed["jobs"]] == [(running.split()[1], "running")]


async def test_waiting_on_a_job_that_already_finished_prints_it_at_once(server: str) -> None:
    """A key that names a finished job answers that job, and --wait prints its outcome."""
    args = ("submit", "clitest.fail", "--input", '{"text": "x"}', "--idempotency-key", "k2")
    first = await jobwarden(server, *args, "--wait", "--json")
    again = await jobwarden(server, *args, "--wait", "--json")
    assert first.code == again.code == 1
    assert json.loads(again.out) == json.loads(first.out)
    assert again.err.splitlines() == [
        f"job {json.loads(first.out)['error']['job_id']} failed: plugin_error: ToolBroke: x"
    ]
