"""Hostile image bytes for the tests and ``benchmarks/bench_hostile.py`` (no tests here).

Header bombs declare a huge size in a file of a few hundred bytes; ``png_bomb`` builds a real
one (valid zlib data for every row) when asked for its full body.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int, color: int = 2, body: bytes | None = None) -> bytes:
    """A PNG declaring ``width`` x ``height`` (8-bit; ``color`` 2 = RGB, 0 = grey) whose
    IDAT holds ``body`` (default: a few KB of zeros, far too little for the size)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    idat = body if body is not None else zlib.compress(b"\0" * 4096)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def png_bomb(side: int) -> bytes:
    """A complete, valid grey PNG of ``side`` x ``side`` zeros (about side**2 / 1000 bytes)."""
    comp = zlib.compressobj(9)
    row = b"\0" * (side + 1)  # filter byte + pixels
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    return png_header(side, side, color=0, body=b"".join(parts))


def jpeg_header(width: int, height: int) -> bytes:
    """A baseline JPEG frame header declaring ``width`` x ``height`` (one grey component)."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof + b"\xff\xd9"


def bmp_header(width: int, height: int) -> bytes:
    """A 24-bit BMP header declaring ``width`` x ``height`` and no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 0, 0, 0, 54) + info


def gif_header(width: int, height: int, frame: tuple[int, int] | None = None) -> bytes:
    """A GIF whose logical screen is ``width`` x ``height``; ``frame``: the first image's
    declared size (may exceed the screen)."""
    fw, fh = frame or (width, height)
    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0)
            + b"\x21\xf9\x04\x00\x00\x00\x00\x00"  # a graphic control extension
            + b"\x2c" + struct.pack("<HHHHB", 0, 0, fw, fh, 0) + b"\x02\x02\x44\x01\x00\x3b")


def tiff_header(width: int, height: int) -> bytes:
    """A little-endian TIFF whose first IFD declares ``width`` x ``height``."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (262, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", *e) for e in entries) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd


def webp_header(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP declaring a ``width`` x ``height`` canvas."""
    body = b"\0" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = b"VP8X" + struct.pack("<I", len(body)) + body
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


HEADER_BOMBS = {  # name -> a few hundred bytes declaring gigapixels
    "png_30000": lambda: png_header(30000, 30000),
    "png_40000": lambda: png_header(40000, 40000),
    "jpeg_60000": lambda: jpeg_header(60000, 60000),
    "bmp_40000": lambda: bmp_header(40000, 40000),
    "gif_65535": lambda: gif_header(65535, 65535),
    "gif_small_screen_big_frame": lambda: gif_header(16, 16, (60000, 60000)),
    "tiff_100000": lambda: tiff_header(100000, 100000),
    "webp_16384": lambda: webp_header(16384, 16384),
}


def encoded(ext: str, width: int, height: int) -> bytes:
    """A real image of ``width`` x ``height`` (random pixels) encoded by OpenCV as ``ext``."""
    rng = np.random.default_rng(width * 7919 + height)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, image)
    assert ok, ext
    return buf.tobytes()
