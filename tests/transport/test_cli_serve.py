"""The real CLI: ``python -m jobwarden serve`` as a subprocess, over real sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from tests.server_process import clean_env, running_server, serve_until_exit
from tests.server_process import output as server_output
from tests.transport.conftest import KEYS, KEYS_TOML, auth

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def _stop(process: Process) -> int:
    process.send_signal(signal.SIGTERM)
    with anyio.fail_after(20):
        return await process.wait()


async def test_serve_runs_jobs_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    """`jobwarden serve` (open, loopback) runs a job with ?wait= and exits 0 on SIGTERM."""
    async with running_server(tmp_path) as (process, base, log):
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/v1/health") as resp:
                health: dict[str, Any] = await resp.json()
            async with http.post(
                base + "/v1/jobs?wait=5",
                json={"tool": "builtin.echo", "input": {"text": "from the CLI"}},
            ) as resp:
                assert resp.status == 200
                job = (await resp.json())["job"]
        code = await _stop(process)
    output = server_output(log)
    assert health["status"] == "ok"
    assert job["state"] == "succeeded"
    assert job["result"] == {"text": "from the CLI"}
    assert code == 0, output
    assert "NO API KEYS CONFIGURED" in output
    assert "Traceback" not in output
    assert (tmp_path / "jobwarden.db").is_file()  # the default store: ./jobwarden.db


async def test_serve_with_a_keys_file_requires_a_key(tmp_path: Path) -> None:
    """With JOBWARDEN_KEYS_FILE the CLI server refuses requests without a key and serves alice."""
    keys = tmp_path / "keys.toml"
    await anyio.Path(keys).write_text(KEYS_TOML)
    env = clean_env(JOBWARDEN_KEYS_FILE=str(keys))
    async with running_server(tmp_path, "--host", "127.0.0.1", env=env) as (process, base, log):
        async with aiohttp.ClientSession() as http:
            body = {"tool": "builtin.echo", "input": {"text": "keyed"}}
            async with http.post(base + "/v1/jobs?wait=5", json=body) as resp:
                assert resp.status == 401
                assert (await resp.json())["error"]["type"] == "unauthorized"
            async with http.post(base + "/v1/jobs?wait=5", json=body, headers=auth("alice")) as r:
                assert r.status == 200
                job = (await r.json())["job"]
            async with http.get(base + "/v1/jobs", headers={"X-API-Key": KEYS["bob"]}) as resp:
                assert (await resp.json())["jobs"] == []
        code = await _stop(process)
    assert job["owner"] == "alice"
    assert code == 0, server_output(log)
    assert "NO API KEYS CONFIGURED" not in server_output(log)


async def test_serve_refuses_to_bind_openly_beyond_loopback() -> None:
    """`serve --host 0.0.0.0` without keys exits 2 with a message saying why."""
    code, stderr = await serve_until_exit("--host", "0.0.0.0", "--port", "0")
    assert code == 2, stderr
    assert "no API keys configured" in stderr
    assert "0.0.0.0" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("how", ["flags", "environment"])
async def test_allowed_origins_open_the_event_websocket_to_those_pages(
    tmp_path: Path, how: str
) -> None:
    """`--allowed-origin` (or JOBWARDEN_ALLOWED_ORIGINS) lets those browser origins open the
    event websocket, however the value was written (upper case, a default port, a trailing
    slash); any other origin is still refused with 403."""
    origins = ["https://app.example", "https://ops.example:8443"]
    written = ["https://App.Example:443/", "https://ops.example:8443"]
    if how == "flags":
        args = ["--store", "memory://", *(f"--allowed-origin={o}" for o in written)]
        env = clean_env()
    else:
        args = ["--store", "memory://"]
        env = clean_env(JOBWARDEN_ALLOWED_ORIGINS=",".join(written))
    async with running_server(tmp_path, *args, env=env) as (process, base, _):
        async with aiohttp.ClientSession() as http:
            for origin in origins:
                headers = {"Origin": origin}
                async with http.ws_connect(base + "/v1/events", headers=headers) as ws:
                    await ws.send_json({"op": "ping"})
                    assert (await ws.receive_json(timeout=10)) == {"type": "pong"}
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(
                    base + "/v1/events", headers={"Origin": "https://evil.example"}
                )
        process.terminate()
    assert refused.value.status == 403


async def test_an_allowed_origin_that_is_not_one_stops_serve_with_one_line() -> None:
    """`--allowed-origin` with a path (or a query, another scheme) exits 2 naming the value,
    where it was taken and then matched no browser's Origin, silently."""
    code, stderr = await serve_until_exit(
        "--store", "memory://", "--allowed-origin", "https://app.example/dashboard"
    )
    assert code == 2, stderr
    assert (
        "--allowed-origin: 'https://app.example/dashboard' is not an origin: no path, query,"
        in stderr
    )
    assert "Traceback" not in stderr


async def test_a_port_in_use_stops_serve_with_one_line() -> None:
    """`serve` on a port another process listens on exits 1 saying so, without a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = await serve_until_exit("--port", str(port), "--store", "memory://")
    assert code == 1, stderr
    last = stderr.splitlines()[-1]
    assert last == f"jobwarden serve: cannot listen on 127.0.0.1:{port}: address already in use"
    assert "Traceback" not in stderr


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    ("host", "start"),
    [
        ("127.0.0.1", "http://127.0.0.1:"),
        pytest.param(
            "::1",
            "http://[::1]:",
            marks=pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here"),
        ),
    ],
)
async def test_the_serving_line_has_the_url_bound(tmp_path: Path, host: str, start: str) -> None:
    """The `serving` log line's url is where the server listens: the port --port 0 was given,
    an IPv6 host in brackets; the server answers there."""
    args = ["--host", host, "--port", "0", "--store", "memory://", "--log-format", "json"]
    process = await anyio.open_process(
        [sys.executable, "-m", "jobwarden", "serve", *args], cwd=tmp_path, env=clean_env()
    )
    try:
        assert process.stderr is not None
        logs = BufferedByteReceiveStream(process.stderr)
        with anyio.fail_after(30):
            while (line := json.loads(await logs.receive_until(b"\n", 1 << 20)))["event"] != (
                "serving"
            ):
                pass
        url = line["url"]
        assert url.startswith(start)
        assert not url.endswith(":0")
        async with aiohttp.ClientSession() as http, http.get(url + "/v1/health") as resp:
            assert resp.status == 200
        assert await _stop(process) == 0
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


def test_an_unknown_log_level_from_the_environment_is_refused() -> None:
    """JOBWARDEN_LOG_LEVEL=loud stops serve with exit code 2, naming the flag and variable."""
    env = {**os.environ, "JOBWARDEN_LOG_LEVEL": "loud"}
    done = subprocess.run(
        [sys.executable, "-m", "jobwarden", "serve", "--port", "9"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 2
    assert "'--log-level' (env var: 'JOBWARDEN_LOG_LEVEL'): 'loud' is not one of" in done.stderr


@pytest.mark.parametrize(
    ("store", "code", "message"),
    [
        ("sqlite:///garbage.db", 1, "garbage.db"),
        ("sqlite:///future.db", 1, "newer than this jobwarden understands"),
        ("sqlite:///nowhere/jobs.db", 1, "is not a directory"),
        ("sqlite:///", 2, "names no file"),
        ("sqlite:///x.db?synchronous=off", 2, "synchronous must be"),
        ("postgres://localhost/jobs", 2, "unsupported store URL"),
        ("redis://[::1/0", 2, "'redis://[::1/0' is not a URL: Invalid IPv6 URL"),
    ],
)
async def test_a_store_that_cannot_be_used_stops_serve_with_the_reason(
    tmp_path: Path, store: str, code: int, message: str
) -> None:
    """An unusable store URL or file exits non-zero at start with one clear line, no traceback."""
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 500)
    future = sqlite3.connect(tmp_path / "future.db")
    future.executescript(
        "CREATE TABLE schema_version (version INTEGER); INSERT INTO schema_version VALUES (99);"
    )
    future.close()
    exit_code, stderr = await serve_until_exit("--port", "0", "--store", store, cwd=tmp_path)
    assert exit_code == code, stderr
    assert message in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "env", "runners"),
    [(("--concurrency", "3"), {}, 3), ((), {"JOBWARDEN_CONCURRENCY": "5"}, 5)],
)
async def test_serve_starts_as_many_runners_as_concurrency_says(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], runners: int
) -> None:
    """`--concurrency N` (or JOBWARDEN_CONCURRENCY) is the number of ToolRunners serve starts."""
    server = running_server(tmp_path, "--store", "memory://", *args, env=clean_env(**env))
    async with server as (process, base, log):
        async with aiohttp.ClientSession() as http, http.get(base + "/v1/metrics") as resp:
            supervisor: dict[str, Any] = (await resp.json())["supervisor"]
        code = await _stop(process)
    assert supervisor["runners"] == runners
    assert code == 0, server_output(log)


async def test_max_wait_bounds_wait_and_is_documented(tmp_path: Path) -> None:
    """`--max-wait-s 2` refuses ?wait=3 with a 400 and /openapi.json says wait is at most 2."""
    server = running_server(tmp_path, "--store", "memory://", "--max-wait-s", "2")
    async with server as (process, base, log):
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/openapi.json") as resp:
                spec: dict[str, Any] = await resp.json()
            body = {"tool": "builtin.echo", "input": {"text": "hi"}}
            async with http.post(base + "/v1/jobs?wait=3", json=body) as resp:
                refused = resp.status
            async with http.post(base + "/v1/jobs?wait=2", json=body) as resp:
                accepted = resp.status
        code = await _stop(process)
    [wait] = spec["paths"]["/v1/jobs"]["post"]["parameters"]
    assert wait["schema"]["maximum"] == 2.0
    assert (refused, accepted) == (400, 200)
    assert code == 0, server_output(log)
