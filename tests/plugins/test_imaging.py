"""The ``imaging`` plugin in real worker processes: what it reads, what it refuses, no Pillow."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image
from structlog.testing import capture_logs

from jobwarden import JobRecord, JobState, Supervisor, errors
from jobwarden.plugins.imaging import INSTALL_HINT, MAX_PIXELS, imaging
from jobwarden.plugins.registry import PluginLifecycle
from tests.images import BLUE, GREEN, RED, encoded, png_header, red_and_blue_png

pytestmark = pytest.mark.anyio

HANG_GUARD_S = 60  # generous: a first call waits for a worker to start and import Pillow
REJECTED = "jobwarden.plugins.imaging.ImageRejected"


GREEN_8X8 = Image.new("RGB", (8, 8), GREEN)


def short_idat_png() -> bytes:
    """A PNG that opens, but whose data chunk claims 2 bytes, so decoding meets a broken chunk."""
    png = bytearray(red_and_blue_png())
    png[png.index(b"IDAT") - 1] = 2  # the low byte of the chunk's length
    return bytes(png)


def flipped(data: bytes, at: int) -> bytes:
    """``data`` with every bit of byte ``at`` flipped."""
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


async def inspect(sup: Supervisor, image: bytes, mime_type: str) -> JobRecord:
    """Run ``imaging.inspect`` on ``image`` and return the finished record."""
    rec = await sup.submit("imaging.inspect", {"image_bytes": image, "mime_type": mime_type})
    return await sup.wait(rec.id, timeout=HANG_GUARD_S)


def rejection(done: JobRecord) -> str:
    """The message of a job that failed with the plugin's ``ImageRejected``."""
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == errors.OutcomeType.PLUGIN_ERROR
    assert done.error.details == {"exception": REJECTED}
    return done.error.message


async def test_inspect_reads_png_jpeg_and_gif_with_their_colours() -> None:
    """PNG, JPEG and GIF images give their format, size, mode, band means and dominant colours."""
    transparent = Image.new("RGBA", (2, 2), (*GREEN, 0))
    gif = Image.new("RGB", (5, 3), BLUE).convert("P")
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[imaging]) as sup:
            png = await inspect(sup, red_and_blue_png(), "image/png")
            green = encoded(Image.new("RGB", (16, 8), GREEN), "JPEG")
            jpeg = await inspect(sup, green, "image/jpeg")
            gif_done = await inspect(sup, encoded(gif, "GIF"), "image/gif")
            rgba = await inspect(sup, encoded(transparent, "PNG"), "image/png")
    assert png.state is JobState.SUCCEEDED
    assert png.result is not None
    assert {k: png.result[k] for k in ("format", "mime_type", "width", "height", "mode")} == {
        "format": "PNG",
        "mime_type": "image/png",
        "width": 4,
        "height": 2,
        "mode": "RGB",
    }
    assert png.result["mean"] == {"R": 127.5, "G": 0.0, "B": 127.5}
    assert png.result["dominant"] == [
        {"hex": "#ff0000", "fraction": 0.5},
        {"hex": "#0000ff", "fraction": 0.5},
    ]
    assert jpeg.result is not None
    assert (jpeg.result["format"], jpeg.result["width"], jpeg.result["height"]) == ("JPEG", 16, 8)
    assert jpeg.result["mean"]["G"] == pytest.approx(160, abs=4)  # JPEG is lossy
    assert gif_done.result is not None
    assert (gif_done.result["format"], gif_done.result["mode"]) == ("GIF", "P")
    assert gif_done.result["dominant"] == [{"hex": "#0000ff", "fraction": 1.0}]
    assert rgba.result is not None
    assert rgba.result["mean"] == {"R": 0.0, "G": 160.0, "B": 0.0, "A": 0.0}


@pytest.mark.parametrize(
    ("first", "second", "box"),
    [(RED, BLUE, (2, 0, 4, 2)), (BLUE, RED, (2, 0, 4, 2)), (BLUE, RED, (0, 1, 4, 2))],
    ids=["red-left", "blue-left", "blue-top"],
)
async def test_equally_common_colours_come_in_reading_order(
    first: tuple[int, int, int], second: tuple[int, int, int], box: tuple[int, int, int, int]
) -> None:
    """Of two colours covering half the image each, the one met first in reading order leads."""
    img = Image.new("RGB", (4, 2), first)
    img.paste(second, box)
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[imaging], process_workers=1) as sup:
            done = await inspect(sup, encoded(img, "PNG"), "image/png")
    assert done.result is not None
    assert [c["hex"] for c in done.result["dominant"]] == [hexed(first), hexed(second)]


def hexed(rgb: tuple[int, int, int]) -> str:
    """``rgb`` as ``#rrggbb``."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


async def test_a_multi_picture_jpeg_counts_as_jpeg() -> None:
    """A camera's multi-picture JPEG, which Pillow reads as MPO, is accepted as image/jpeg."""
    first, second = Image.new("RGB", (8, 8), BLUE), Image.new("RGB", (8, 8), GREEN)
    out = io.BytesIO()
    first.save(out, "MPO", save_all=True, append_images=[second])
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[imaging], process_workers=1) as sup:
            done = await inspect(sup, out.getvalue(), "image/jpeg")
    assert done.state is JobState.SUCCEEDED
    assert done.result is not None
    assert (done.result["format"], done.result["width"]) == ("JPEG", 8)


@pytest.mark.parametrize(
    ("image", "mime_type", "message"),
    [
        (red_and_blue_png(), "image/gif", "mime_type is image/gif but the bytes are a PNG image"),
        (b"not an image at all", "image/png", "the bytes are not a readable image/png image"),
        (red_and_blue_png()[:60], "image/png", "the PNG image cannot be decoded"),
        (png_header(8000, 8000), "image/png", f"8000x8000 is more than {MAX_PIXELS} pixels"),
        (png_header(20000, 20000), "image/png", "could be decompression bomb DOS attack"),
        (red_and_blue_png()[:20], "image/png", "not a readable image/png image: Truncated"),
        (short_idat_png(), "image/png", "the PNG image cannot be decoded: broken PNG file"),
        (encoded(GREEN_8X8, "JPEG")[:31], "image/jpeg", "not a readable image/jpeg image: Trunc"),
        (encoded(GREEN_8X8, "BMP")[:20], "image/bmp", "not a readable image/bmp image: Truncated"),
        (flipped(encoded(GREEN_8X8, "WEBP"), 20), "image/webp", "could not create decoder"),
    ],
    ids=[
        "mime-mismatch",
        "not-an-image",
        "truncated",
        "too-many-pixels",
        "decompression-bomb",
        "png-header-cut",
        "png-chunk-broken",
        "jpeg-header-cut",
        "bmp-header-cut",
        "webp-corrupt",
    ],
)
async def test_bad_images_fail_the_job_with_a_clear_plugin_error(
    image: bytes, mime_type: str, message: str
) -> None:
    """Mismatched, undecodable, truncated or oversized images fail as plugin_error saying why."""
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[imaging], process_workers=1) as sup:
            done = await inspect(sup, image, mime_type)
            healthy = await inspect(sup, red_and_blue_png(), "image/png")
    assert rejection(done).startswith("ImageRejected: ")
    assert message in rejection(done)
    assert healthy.state is JobState.SUCCEEDED


@pytest.mark.parametrize(
    "payload",
    [
        {"image_bytes": b"x", "mime_type": "text/plain"},
        {"image_bytes": b"x", "mime_type": "image/jpg"},
        {"image_bytes": b"", "mime_type": "image/png"},
    ],
    ids=["not-an-image-type", "unsupported-alias", "no-bytes"],
)
async def test_an_unsupported_mime_type_or_no_bytes_is_refused_at_submit(
    payload: dict[str, Any],
) -> None:
    """A MIME type outside the supported list, or empty bytes, is invalid_input and no job."""
    async with Supervisor(plugins=[imaging]) as sup:
        with pytest.raises(errors.InvalidInput):
            await sup.submit("imaging.inspect", payload)
        assert sup.processes.statistics().started == 0


def test_inspect_runs_in_process_mode_under_limits() -> None:
    """inspect is a process tool with a timeout, a memory cap and a CPU-time cap."""
    tool = imaging.tools["inspect"]
    assert (tool.mode, tool.timeout_s, tool.memory_mb, tool.cpu_s) == ("process", 30.0, 1024, 20)
    assert next(iter(imaging.tools)) == "inspect"


async def test_without_pillow_the_plugin_registers_and_fails_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without Pillow the plugin is failed with the install hint, and its tool refuses jobs."""
    monkeypatch.setitem(sys.modules, "PIL", None)
    with capture_logs() as logs:
        async with Supervisor(plugins=[imaging]) as sup:
            status = sup.registry.status("imaging")
            with pytest.raises(errors.ToolNotFound) as refused:
                await sup.submit("imaging.inspect", {"image_bytes": b"x", "mime_type": "image/png"})
    [line] = [entry for entry in logs if entry.get("plugin") == "imaging"]
    assert (line["log_level"], line["error"]) == ("warning", INSTALL_HINT)
    assert "exc_info" not in line
    assert status.state is PluginLifecycle.FAILED
    assert status.reason is not None
    assert INSTALL_HINT in status.reason
    assert INSTALL_HINT in str(refused.value)


async def test_a_worker_without_pillow_fails_the_job_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker process that cannot import Pillow fails the job as plugin_error with the hint."""
    # Spawned workers take the parent's sys.path: this stand-in shadows Pillow in them only, as
    # the parent already holds the real one in sys.modules.
    (tmp_path / "PIL").mkdir()
    (tmp_path / "PIL" / "__init__.py").write_text('raise ImportError("no Pillow here")\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    with anyio.fail_after(HANG_GUARD_S):
        async with Supervisor(plugins=[imaging]) as sup:
            done = await inspect(sup, red_and_blue_png(), "image/png")
    assert done.state is JobState.FAILED
    assert done.error is not None
    assert done.error.type == errors.OutcomeType.PLUGIN_ERROR
    assert done.error.message == f"PillowMissing: {INSTALL_HINT}"
