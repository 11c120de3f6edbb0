"""The ``imaging`` plugin: the seed's image analysis, done for real with Pillow in process mode.

Pillow is the optional extra ``jobwarden[imaging]``. This module never imports it at import time,
so the plugin registers (and the server starts) without it: the startup hook then marks the
plugin failed with the reason, and a worker that cannot import it fails the job saying the same.
Images are decoded only in worker processes, under the tool's memory, CPU and time limits, never
in the server's own process.
"""

from __future__ import annotations

import importlib.util
import io
from typing import TYPE_CHECKING, Annotated, Literal, cast

import msgspec

from jobwarden.plugins.context import ToolContext
from jobwarden.plugins.tool import Plugin

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import ModuleType

    from PIL.Image import Image

INSTALL_HINT = "Pillow is not installed: pip install 'jobwarden[imaging]'"
# The formats read, by the MIME type a caller gives. Pillow is told to try these decoders only:
# it can also open formats whose loaders run external programs (EPS runs Ghostscript).
FORMATS = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
}
MimeType = Literal["image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff"]
# Stricter than Pillow's own decompression-bomb check (left on, at its default: a warning above
# about 89M pixels, DecompressionBombError above twice that), so that a decoded image (up to 4
# bytes a pixel) fits the worker's memory_mb with room to spare.
MAX_PIXELS = 50_000_000
THUMBNAIL_PX = 128  # the colour summary reads a copy at most this big: cheap at any image size
PALETTE = 8  # colours of the reduced palette the dominant colours are drawn from
DOMINANT = 5
# What Pillow raises for bytes that do not decode, at open as while decoding: OSError
# ("Truncated File Read", "could not create decoder object", "image file is truncated"),
# SyntaxError ("broken PNG file") and ValueError.
UNDECODABLE = (OSError, SyntaxError, ValueError)

imaging = Plugin(
    "imaging",
    version="1.0.0",
    description="Image analysis with Pillow (the jobwarden[imaging] extra), in worker processes.",
)


class InspectIn(msgspec.Struct, forbid_unknown_fields=True):
    """An image (base64 in JSON) and the MIME type it claims to have."""

    image_bytes: Annotated[bytes, msgspec.Meta(min_length=1)]
    mime_type: MimeType


class Colour(msgspec.Struct):
    """One colour of the reduced palette and the share of the pixels closest to it."""

    hex: str
    fraction: float


class InspectOut(msgspec.Struct):
    """What the image is, and a small summary of its colours."""

    format: str
    mime_type: str
    width: int
    height: int
    mode: str
    mean: dict[str, float]
    dominant: list[Colour]


class ImageRejected(ValueError):
    """The bytes are not a readable image of the claimed type, or are too big to decode."""


class PillowMissing(ImportError):
    """Pillow, the ``jobwarden[imaging]`` extra, is not installed."""


@imaging.on_startup
async def require_pillow() -> None:
    """Fail the plugin at start, with the install hint, when Pillow is missing.

    Only the package's presence is checked: importing it is left to the workers that use it.
    """
    if importlib.util.find_spec("PIL") is None:
        raise PillowMissing(INSTALL_HINT)


@imaging.tool(mode="process", timeout=30.0, memory_mb=1024, cpu_s=20)
def inspect(inp: InspectIn, ctx: ToolContext) -> InspectOut:
    """Format, size, mode, mean per band and dominant colours of a PNG, JPEG, GIF, WebP, BMP or
    TIFF image; the bytes must be of the format the MIME type names."""
    pil = _pillow()
    expected = FORMATS[inp.mime_type]
    try:
        img = pil.open(io.BytesIO(inp.image_bytes), formats=list(FORMATS.values()))
    except pil.UnidentifiedImageError as exc:
        raise ImageRejected(f"the bytes are not a readable {inp.mime_type} image") from exc
    except pil.DecompressionBombError as exc:
        raise ImageRejected(str(exc)) from exc
    except UNDECODABLE as exc:  # a header that names the format but is cut short or corrupt
        raise ImageRejected(f"the bytes are not a readable {inp.mime_type} image: {exc}") from exc
    # Pillow reads a camera's multi-picture JPEG as "MPO": it is still a JPEG.
    found = "JPEG" if img.format == "MPO" else img.format
    if found != expected:
        raise ImageRejected(f"mime_type is {inp.mime_type} but the bytes are a {found} image")
    width, height, mode = img.width, img.height, img.mode
    if width * height > MAX_PIXELS:
        raise ImageRejected(f"{width}x{height} is more than {MAX_PIXELS} pixels")
    try:
        img.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))  # decodes (JPEG: at a reduced scale)
        alpha = "A" in img.mode or "transparency" in img.info
        small = img.convert("RGBA" if alpha else "RGB")
    except UNDECODABLE as exc:  # truncated or corrupt data, an unconvertible mode
        raise ImageRejected(f"the {found} image cannot be decoded: {exc}") from exc
    return InspectOut(
        format=expected,
        mime_type=inp.mime_type,
        width=width,
        height=height,
        mode=mode,
        mean=_means(small),
        dominant=_dominant(pil, small.convert("RGB")),
    )


def _pillow() -> ModuleType:
    """``PIL.Image``, imported here, in the worker, or ``PillowMissing``."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise PillowMissing(INSTALL_HINT) from exc
    return Image


def _means(img: Image) -> dict[str, float]:
    """The mean of each band (0-255), by band name."""
    histograms = img.histogram()
    means: dict[str, float] = {}
    for n, band in enumerate(img.getbands()):
        counts = histograms[n * 256 : (n + 1) * 256]
        means[band] = round(sum(v * c for v, c in enumerate(counts)) / sum(counts), 2)
    return means


def _dominant(pil: ModuleType, rgb: Image) -> list[Colour]:
    """The most common colours of ``rgb`` reduced to a ``PALETTE``-colour palette; of colours
    as common, the one met first in reading order (left to right, top to bottom) comes first."""
    reduced = rgb.quantize(colors=PALETTE, method=pil.Quantize.MEDIANCUT)
    palette = reduced.getpalette() or []
    total = rgb.width * rgb.height
    # A "P" image's pixel values are palette indices: ints, where Pillow's types allow more.
    found = cast("list[tuple[int, int]]", reduced.getcolors(PALETTE) or [])
    # Ties are not left to the palette's index order, which depends on how median cut split it.
    first_seen: dict[int, int] = {}
    for position, index in enumerate(cast("Iterable[int]", reduced.getdata())):
        first_seen.setdefault(index, position)
        if len(first_seen) == len(found):
            break
    counts = sorted(found, key=lambda item: (-item[0], first_seen[item[1]]))
    colours = []
    for count, index in counts[:DOMINANT]:
        r, g, b = palette[3 * index : 3 * index + 3]
        colours.append(Colour(hex=f"#{r:02x}{g:02x}{b:02x}", fraction=round(count / total, 4)))
    return colours
