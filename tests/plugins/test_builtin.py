"""The builtin plugin's tools, called directly with a fake ToolContext."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from jobwarden import errors
from jobwarden.plugins import builtin as bi
from tests.plugins.fakes import ProgressSink, make_context


def test_builtin_plugin_declares_its_tools() -> None:
    """The builtin plugin declares echo, sleep, fail and sha256 with their modes and timeouts."""
    tools = bi.builtin.tools
    assert list(tools) == ["echo", "sleep", "fail", "sha256"]
    assert {t.name: (t.mode, t.timeout_s) for t in tools.values()} == {
        "builtin.echo": ("async", 10.0),
        "builtin.sleep": ("async", 86_400.0),
        "builtin.fail": ("async", 10.0),
        "builtin.sha256": ("thread", 60.0),
    }
    assert all(t.description for t in tools.values())
    assert bi.builtin.version == "1.0.0"


@pytest.mark.anyio
async def test_echo_returns_the_text() -> None:
    """echo returns the text it was given, unchanged, and reports no progress."""
    sink = ProgressSink()
    out = await bi.echo(bi.EchoIn(text="héllo\n"), make_context(sink))
    assert out == bi.EchoOut(text="héllo\n")
    assert sink.calls == []


@pytest.mark.anyio
async def test_sleep_zero_seconds_without_steps() -> None:
    """sleep with seconds=0 returns at once with slept_s=0 and no progress."""
    sink = ProgressSink()
    out = await bi.sleep(bi.SleepIn(seconds=0), make_context(sink))
    assert out == bi.SleepOut(slept_s=0)
    assert sink.calls == []


@pytest.mark.anyio
async def test_sleep_steps_report_progress() -> None:
    """sleep with steps reports progress once per step, ending at 1.0."""
    sink = ProgressSink()
    out = await bi.sleep(bi.SleepIn(seconds=0, steps=4), make_context(sink))
    assert out == bi.SleepOut(slept_s=0)
    assert sink.calls == [
        (0.25, "step 1 of 4"),
        (0.5, "step 2 of 4"),
        (0.75, "step 3 of 4"),
        (1.0, "step 4 of 4"),
    ]


@pytest.mark.anyio
async def test_fail_raises_requested_failure_with_the_message() -> None:
    """fail raises RequestedFailure carrying the requested message (or the default)."""
    ctx = make_context(ProgressSink())
    with pytest.raises(bi.RequestedFailure, match=r"^disk on fire$"):
        await bi.fail(bi.FailIn(message="disk on fire"), ctx)
    with pytest.raises(bi.RequestedFailure, match=r"^failure requested$"):
        await bi.fail(bi.FailIn(), ctx)


@pytest.mark.parametrize("data", [b"", b"abc", bytes(range(256)) * 10])
def test_sha256_digest_and_size(data: bytes) -> None:
    """sha256 returns the hex digest and the length of the bytes it was given."""
    out = bi.sha256(bi.Sha256In(data=data), make_context(ProgressSink()))
    assert out == bi.Sha256Out(hexdigest=hashlib.sha256(data).hexdigest(), size=len(data))


def test_sha256_input_is_base64_in_json() -> None:
    """sha256's input arrives as base64 text and is validated into bytes."""
    args = bi.builtin.tools["sha256"].validate_input({"data": "aGk="})
    assert args == bi.Sha256In(data=b"hi")


@pytest.mark.parametrize(
    ("tool", "data"),
    [
        ("sleep", {"seconds": -1}),
        ("sleep", {"seconds": 86_401}),
        ("sleep", {"seconds": 1, "steps": -1}),
        ("sleep", {"seconds": 1, "steps": 1_001}),
        ("sleep", {}),
        ("sleep", {"seconds": 1, "extra": True}),
        ("echo", {"text": "x", "extra": 1}),
        ("echo", {"text": 5}),
        ("fail", {"message": "m", "code": 3}),
        ("sha256", {"data": "not base64!"}),
        ("sha256", {"data": "aGk=", "algo": "md5"}),
    ],
)
def test_invalid_builtin_input_is_rejected(tool: str, data: dict[str, Any]) -> None:
    """Out-of-bounds values and unknown fields are rejected with InvalidInput."""
    with pytest.raises(errors.InvalidInput) as info:
        bi.builtin.tools[tool].validate_input(data)
    assert info.value.tool == f"builtin.{tool}"


@pytest.mark.parametrize(
    ("tool", "data"),
    [
        ("sleep", {"seconds": 0}),
        ("sleep", {"seconds": 86_400, "steps": 1_000}),
        ("echo", {"text": ""}),
        ("fail", {}),
    ],
)
def test_boundary_builtin_input_is_accepted(tool: str, data: dict[str, Any]) -> None:
    """Values at the documented bounds are accepted."""
    bi.builtin.tools[tool].validate_input(data)


@pytest.mark.anyio
async def test_outputs_are_json_ready() -> None:
    """Each tool's output passes its own output check and becomes builtins."""
    ctx = make_context(ProgressSink())
    tools = bi.builtin.tools
    echo_out = await bi.echo(bi.EchoIn(text="x"), ctx)
    assert tools["echo"].output_to_builtins(echo_out) == {"text": "x"}
    sleep_out = await bi.sleep(bi.SleepIn(seconds=0), ctx)
    assert tools["sleep"].output_to_builtins(sleep_out) == {"slept_s": 0}
    sha_out = bi.sha256(bi.Sha256In(data=b""), ctx)
    assert tools["sha256"].output_to_builtins(sha_out) == {
        "hexdigest": hashlib.sha256(b"").hexdigest(),
        "size": 0,
    }
