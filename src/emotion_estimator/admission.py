"""The one image-admission rule: an image's declared size is read from its header and checked
before any decode.

Every reader of encoded images (the server's uploads and frames, stills, folder scans,
``prepare --folder``) calls :func:`admit` (bytes) or :func:`admit_file` (a path) first, and
:func:`decode` to decode. An image is refused with :class:`ImageRejected` (an
:class:`~emotion_estimator.errors.InputError`: exit 2 on the command line, 400 / 413 from the
server, "listed as bad" in folder scans) when

- its format is not one whose header is read here (PNG, JPEG, BMP, WebP, GIF, TIFF, PNM),
  or the header is cut short or inconsistent (400);
- it declares more than ``max_pixels`` pixels (413): a 1 KB PNG may declare 40000x40000, and
  decoding it would need gigabytes. The default, :data:`DEFAULT_MAX_PIXELS`, is taken from
  ``$EMOTION_ESTIMATOR_MAX_PIXELS`` when set;
- a side is under :data:`MIN_SIDE` pixels (400): too small for a face, and too small for the
  reduced decodes.

Reading a header costs time proportional to the bytes read (a JPEG's markers are walked, at
most :data:`MAX_SEGMENTS` of them), never to the declared size.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

MAX_PIXELS_ENV = "EMOTION_ESTIMATOR_MAX_PIXELS"
DEFAULT_MAX_PIXELS = 8192 * 8192  # an 8000x8000 photo (read reduced), 8K and 4K frames
MIN_SIDE = 8
MAX_SEGMENTS = 4096  # JPEG markers / GIF blocks walked before giving up
FORMATS = ("PNG", "JPEG", "BMP", "WebP", "GIF", "TIFF", "PNM")

Reader = Callable[[int, int], bytes]  # (offset, size) -> at most size bytes


class ImageRejected(InputError):
    """An image refused before decoding; ``status`` is 400 (not usable) or 413 (too large).

    The message reads ``REASON: WHAT`` (the project's order: ``no such file: PATH``);
    ``reason`` alone is what the server answers."""

    def __init__(self, what: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{reason}: {what}")
        self.reason, self.status = reason, status


@dataclass(frozen=True)
class Declared:
    """What an image's header declares."""

    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def max_pixels_default() -> int:
    """``$EMOTION_ESTIMATOR_MAX_PIXELS`` when set (a positive integer), else the default."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise InputError(f"${MAX_PIXELS_ENV} must be a positive integer, not {raw!r}")
    return value


# header parsers: each takes a reader, returns (width, height) or None when inconsistent ---------
def _png(read: Reader) -> tuple[int, int] | None:
    head = read(8, 16)
    if len(head) < 16 or head[4:8] != b"IHDR":
        return None
    return struct.unpack(">II", head[8:16])


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg(read: Reader) -> tuple[int, int] | None:
    pos = 2
    for _ in range(MAX_SEGMENTS):
        head = read(pos, 4)
        if len(head) < 2 or head[0] != 0xFF:
            return None
        marker = head[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
            pos += 2
            continue
        if marker in (0xD9, 0xDA) or len(head) < 4:  # end or scan data before any frame header
            return None
        length = struct.unpack(">H", head[2:4])[0]
        if length < 2:
            return None
        if marker in _SOF:
            sof = read(pos + 4, 5)
            if len(sof) < 5:
                return None
            height, width = struct.unpack(">HH", sof[1:5])
            return width, height
        pos += 2 + length
    return None


def _bmp(read: Reader) -> tuple[int, int] | None:
    head = read(14, 12)
    if len(head) < 12:
        return None
    size = struct.unpack("<I", head[:4])[0]
    if size == 12:  # OS/2 core header
        return struct.unpack("<HH", head[4:8])
    if size < 40:
        return None
    width, height = struct.unpack("<ii", head[4:12])
    return (width, abs(height)) if width > 0 else None


def _webp(read: Reader) -> tuple[int, int] | None:
    head = read(8, 22)
    if len(head) < 22 or head[:4] != b"WEBP":
        return None
    kind, body = head[4:8], head[12:]
    if kind == b"VP8 ":
        if body[3:6] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", body[6:10])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":
        if body[0] != 0x2F:
            return None
        bits = struct.unpack("<I", body[1:5])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":
        return (int.from_bytes(body[4:7], "little") + 1,
                int.from_bytes(body[7:10], "little") + 1)
    return None


def _gif(read: Reader) -> tuple[int, int] | None:
    """The logical screen, grown to the first image's extent when that is larger."""
    head = read(6, 7)
    if len(head) < 7:
        return None
    width, height, flags = struct.unpack("<HHB", head[:5])
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    for _ in range(MAX_SEGMENTS):
        block = read(pos, 10)
        if not block:
            return None
        if block[0] == 0x2C:  # image descriptor
            if len(block) < 9:
                return None
            left, top, w, h = struct.unpack("<HHHH", block[1:9])
            return max(width, left + w), max(height, top + h)
        if block[0] != 0x21 or len(block) < 3:  # an extension, or the end / garbage
            return None
        pos += 2
        for _ in range(MAX_SEGMENTS):  # its sub-blocks
            size = read(pos, 1)
            if not size:
                return None
            pos += 1 + size[0]
            if size[0] == 0:
                break
        else:
            return None
    return None


def _tiff(read: Reader) -> tuple[int, int] | None:
    """ImageWidth / ImageLength of the first IFD (the page OpenCV decodes); BigTIFF too."""
    head = read(0, 16)
    if len(head) < 8:
        return None
    end = "<" if head[:2] == b"II" else ">"
    big = struct.unpack(end + "H", head[2:4])[0] == 43
    if big:
        if len(head) < 16:
            return None
        offset = struct.unpack(end + "Q", head[8:16])[0]
        count_fmt, entry_size, value_at = "Q", 20, 12
    else:
        offset = struct.unpack(end + "I", head[4:8])[0]
        count_fmt, entry_size, value_at = "H", 12, 8
    count_size = struct.calcsize(count_fmt)
    raw = read(offset, count_size)
    if len(raw) < count_size:
        return None
    count = min(struct.unpack(end + count_fmt, raw)[0], MAX_SEGMENTS)
    table = read(offset + count_size, count * entry_size)
    found: dict[int, int] = {}
    for i in range(len(table) // entry_size):
        entry = table[i * entry_size:(i + 1) * entry_size]
        tag, kind = struct.unpack(end + "HH", entry[:4])
        if tag in (256, 257) and kind in (3, 4, 16):
            fmt = {3: "H", 4: "I", 16: "Q"}[kind]
            found[tag] = struct.unpack_from(end + fmt, entry, value_at)[0]
    if 256 not in found or 257 not in found:
        return None
    return found[256], found[257]


def _pnm(read: Reader) -> tuple[int, int] | None:
    head = read(2, 512)
    numbers: list[int] = []
    for line in head.split(b"\n"):
        for token in line.split(b"#", 1)[0].split():
            if not token.isdigit():
                return None
            numbers.append(int(token))
            if len(numbers) == 2:
                return numbers[0], numbers[1]
    return None


_PARSERS: tuple[tuple[str, Callable[[bytes], bool], Callable[[Reader], tuple[int, int] | None]],
                ...] = (
    ("PNG", lambda h: h.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    ("JPEG", lambda h: h.startswith(b"\xff\xd8"), _jpeg),
    ("BMP", lambda h: h.startswith(b"BM"), _bmp),
    ("WebP", lambda h: h.startswith(b"RIFF") and h[8:12] == b"WEBP", _webp),
    ("GIF", lambda h: h.startswith((b"GIF87a", b"GIF89a")), _gif),
    ("TIFF", lambda h: h[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"), _tiff),
    ("PNM", lambda h: len(h) > 2 and h[0:1] == b"P" and h[1:2] in b"123456"
     and h[2:3].isspace(), _pnm),
)


def declared_size(read: Reader, what: str = "image") -> Declared:
    """The format and size an image's header declares; :class:`ImageRejected` (400) when the
    format is not read here or the header is cut short or inconsistent."""
    head = read(0, 16)
    if not head:
        raise ImageRejected(what, "empty file")
    for name, matches, parse in _PARSERS:
        if matches(head):
            try:
                size = parse(read)
            except (struct.error, ValueError, IndexError):
                size = None
            if size is None or size[0] <= 0 or size[1] <= 0:
                raise ImageRejected(what, f"cannot decode image ({name} header cut short or "
                                          "inconsistent)")
            return Declared(name, int(size[0]), int(size[1]))
    raise ImageRejected(what, f"cannot decode image (not one of {', '.join(FORMATS)})")


def check(declared: Declared, max_pixels: int | None = None, what: str = "image") -> Declared:
    """``declared`` when its size is admitted, else :class:`ImageRejected`."""
    limit = max_pixels_default() if max_pixels is None else max_pixels
    w, h = declared.width, declared.height
    if declared.pixels > limit:
        hint = f", see ${MAX_PIXELS_ENV}" if max_pixels is None else ""
        raise ImageRejected(what, f"image too large ({w}x{h} = {declared.pixels} pixels; the "
                                  f"limit is {limit}{hint})", status=413)
    if min(w, h) < MIN_SIDE:
        raise ImageRejected(what, f"image too small ({w}x{h}; at least {MIN_SIDE} px a side)")
    return declared


def _bytes_reader(data: bytes | bytearray | memoryview | np.ndarray) -> Reader:
    view = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else \
        memoryview(np.ascontiguousarray(data, np.uint8)).cast("B")

    def read(offset: int, size: int) -> bytes:
        return bytes(view[offset:offset + size]) if offset >= 0 else b""

    return read


def admit(data: bytes | bytearray | memoryview | np.ndarray, max_pixels: int | None = None,
          what: str = "image") -> Declared:
    """Check encoded image bytes against the rule (module docstring) without decoding."""
    return check(declared_size(_bytes_reader(data), what), max_pixels, what)


def admit_file(path: str | os.PathLike, max_pixels: int | None = None) -> Declared:
    """Check an image file against the rule, reading only its header; ``OSError`` when it
    cannot be opened."""
    with open(path, "rb") as fh:
        def read(offset: int, size: int) -> bytes:
            if offset < 0:
                return b""
            fh.seek(offset)
            return fh.read(size)

        return check(declared_size(read, str(path)), max_pixels, str(path))


def decode(data: bytes | np.ndarray, max_pixels: int | None = None, what: str = "image",
           flag: int | None = None) -> np.ndarray:
    """Admit, then decode (BGR by default; ``flag``: an ``cv2.IMREAD_*`` flag); a decoder
    failure is an :class:`ImageRejected` (400), never a ``cv2.error``."""
    import cv2

    admit(data, max_pixels, what)
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    try:
        image = cv2.imdecode(buf, cv2.IMREAD_COLOR if flag is None else flag)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageRejected(what, "cannot decode image")
    return image


def read_file(path: str | os.PathLike, max_pixels: int | None = None,
              flag: int | None = None) -> np.ndarray:
    """Admit a file by its header, then read and decode it (see :func:`decode`)."""
    admit_file(path, max_pixels)
    return decode(np.fromfile(Path(path), dtype=np.uint8), max_pixels, str(path), flag)
