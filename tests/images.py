"""Tiny images made with Pillow for the imaging tests, and PNG headers that only claim a size."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 160, 0)


def encoded(img: Image.Image, fmt: str) -> bytes:
    """``img`` saved in ``fmt`` (PNG, JPEG, GIF, ...)."""
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def red_and_blue_png() -> bytes:
    """A 4x2 RGB PNG: its left half red, its right half blue."""
    img = Image.new("RGB", (4, 2), RED)
    img.paste(BLUE, (2, 0, 4, 2))
    return encoded(img, "PNG")


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` but holds one empty data chunk: openable (the
    header is all Pillow reads at open), never decodable."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
