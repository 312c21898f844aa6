"""How much of one image labelsift may hold in memory, checked before any pixel is decoded.

Three limits, the same for every place that decodes (the local model, Rekognition's transcoding
and downscaling, review thumbnails):

- `MAX_OBJECT_BYTES`: an object bigger than this is never read for its pixels (`TooLarge`). Objects
  are not held whole in memory anyway: local files are opened in place, S3 objects are streamed
  into a temporary file that stays in memory only up to `SPOOL_BYTES` (`Storage.open_read`).
- `MAX_DECODE_PIXELS`: the pixels one image may decode to, *after* JPEG DCT scaling (`draft`), as
  read from the header (Pillow's `Image.open` parses the header only). Over it: `ImageTooLarge`,
  naming the declared size and the budget. 100 MP is Rekognition's own largest frame (10,000 px a
  side); a JPEG decoded for the local model (≥ 416 px a side) is drafted to 1/8 of its sides, so
  even a 400 MP JPEG would decode to 6 MP. A JPEG that has to be re-encoded for Rekognition is
  decoded at the first DCT scale that gives at most `MAX_DRAFT_PIXELS` (16 MP): labels need far
  fewer pixels than that, and boxes are ratios, so they hold for the original.
- `MAX_HEADER_BYTES`: what Pillow may read while it opens an image, before any pixel: at most
  16 MiB per image (a JPEG's APPn segments, a PNG's chunks before its pixels, a TIFF's tag data,
  a GIF's comment blocks), or `ImageTooLarge`. Pillow keeps what it reads there in memory (and
  unpacks a TIFF tag of 4-byte numbers into a tuple of 8 bytes or more per number), so one file
  of 400 MB under the byte cap would otherwise cost over 1 GB before any pixel. A WebP is read
  whole while it opens (libwebp decodes from memory): at most `MAX_WEBP_BYTES` (64 MiB).
- `DECODE_POOL_BYTES`: all decodes in the process together. Each decode reserves
  `BYTES_PER_PIXEL` per decoded pixel (Pillow keeps RGB and RGBA at 4 bytes a pixel, and one
  working copy is allowed for orientation or a mode change) before it loads, and gives it back
  when done; a decode waits while the pool is full. One image at the budget (800 MB) fits, so
  nothing within the budget is refused for want of room, and however many workers a scan runs,
  pixel memory stays under the pool: memory ≈ models + workers × `SPOOL_BYTES` + the pool.
  On Linux, freed pixel blocks go straight back to the system (`return_freed_pixels_to_the_os`),
  so that bound holds for resident memory, not only for memory in use.
"""

from __future__ import annotations

import ctypes
import io
import re
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, cast

from PIL import Image, PngImagePlugin

MAX_OBJECT_BYTES = 1024**3
SPOOL_BYTES = 8 * 1024**2
MAX_DECODE_PIXELS = 100_000_000
MAX_DRAFT_PIXELS = 16_000_000
BYTES_PER_PIXEL = 8
DECODE_POOL_BYTES = 1024**3
DRAFT_SCALES = (1, 2, 4, 8)  # what libjpeg's DCT scaling offers
MMAP_THRESHOLD = 4 * 1024**2
MAX_HEADER_BYTES = 16 * 1024**2  # what Pillow may read (and keep) while it opens an image
MAX_WEBP_BYTES = 64 * 1024**2  # a WebP is read whole while it opens
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


class ImageLimitError(Exception):
    """An image over a limit. `code`: ImageTooLarge (pixels) or TooLarge (bytes)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def megapixels(width: int, height: int) -> str:
    return f"{width * height / 1e6:.0f} MP" if width * height >= 1e6 else f"{width * height / 1e6:.2f} MP"


def size_text(size: int) -> str:
    return f"{size / 1024**3:.1f} GiB" if size >= 1024**3 else f"{size / 1024**2:.1f} MiB"


def too_large_message(uri: str, size: int, limit: int = MAX_OBJECT_BYTES) -> str:
    return (
        f"{uri} is {size_text(size)} ({size:,} bytes), over the {size_text(limit)} labelsift reads for "
        "one image; it was not read. Shrink or re-encode it, or exclude it."
    )


def open_image(source: bytes | IO[bytes], uri: str, formats: tuple[str, ...] | None = None) -> Image.Image:
    """Pillow's lazy open: the header only. Pillow's own bomb limit becomes ImageTooLarge.

    Pillow's errors for bytes that are not an image pass through.
    """
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    check_jpeg_header(stream, uri)
    check_png_chunks(stream, uri)
    budgeted = _OpenBudget(stream, uri)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(cast(IO[bytes], budgeted), formats=formats)
    except Image.DecompressionBombError as error:
        declared = re.search(r"\((\d+) pixels\)", str(error))
        shown = f"{int(declared.group(1)) / 1e6:.0f} MP" if declared else "more pixels than Pillow allows"
        raise ImageLimitError(
            "ImageTooLarge",
            f"{uri}: the image declares {shown}, over labelsift's decode budget of "
            f"{MAX_DECODE_PIXELS / 1e6:.0f} MP per image; it was not decoded (a decompression bomb or a "
            "very large scan). Downscale it below the budget, or exclude it.",
        ) from error
    budgeted.lift()  # from here on Pillow reads pixels, which the pixel budget bounds
    return image


class _OpenBudget:
    """`stream` for Pillow, refusing (ImageTooLarge) to hand out more than the open budget until
    `lift()`: `MAX_HEADER_BYTES`, or `MAX_WEBP_BYTES` for a WebP. Everything else is the stream's."""

    def __init__(self, stream: IO[bytes], uri: str) -> None:
        self._stream = stream
        self._uri = uri
        start = stream.tell()
        head = stream.read(12)
        stream.seek(start)
        self._webp = head[:4] == b"RIFF" and head[8:12] == b"WEBP"
        self._limit: int | None = MAX_WEBP_BYTES if self._webp else MAX_HEADER_BYTES
        self._read = 0

    def lift(self) -> None:
        self._limit = None

    def _count(self, size: int) -> None:
        if self._limit is None:
            return
        self._read += size
        if self._read > self._limit:
            what = "a WebP is read whole while it opens" if self._webp else "metadata before its pixels"
            raise ImageLimitError(
                "ImageTooLarge",
                f"{self._uri}: opening the image would read over {size_text(self._limit)} ({what}: "
                "tag data, chunks, comments) before any pixel, and hold it in memory; it was not "
                "opened. Strip the metadata or re-encode the image, or exclude it.",
            )

    def read(self, size: int | None = -1) -> bytes:
        if size is None:
            size = -1
        if self._limit is not None and size < 0:
            size = self._limit - self._read + 1  # never a whole multi-GB file in one read
        data = self._stream.read(size)
        self._count(len(data))
        return data

    def read1(self, size: int = -1) -> bytes:
        return self.read(size)

    def readline(self, size: int | None = -1) -> bytes:
        if size is None:
            size = -1
        if self._limit is not None and size < 0:
            size = self._limit - self._read + 1
        data = self._stream.readline(size)
        self._count(len(data))
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def check_jpeg_header(stream: IO[bytes], uri: str, limit: int = MAX_HEADER_BYTES) -> None:
    """ImageTooLarge when a JPEG's segments before its pixels (EXIF, ICC, APPn) pass `limit` bytes.

    Pillow keeps every APPn segment in memory while it opens a JPEG, so a file made of a gigabyte
    of them would cost a gigabyte before any pixel. This walks the segment lengths (4 bytes read
    per segment, the rest skipped) and leaves `stream` where it was; anything that is not a JPEG
    is left to Pillow.
    """
    start = stream.tell()
    try:
        if stream.read(2) != b"\xff\xd8":
            return
        offset = 2
        while offset <= limit:
            marker = stream.read(4)
            if len(marker) < 4 or marker[0] != 0xFF or marker[1] in (0xD9, 0xDA, 0xFF):
                return  # the end, the pixels (start of scan) or something Pillow will judge
            standalone = 0xD0 <= marker[1] <= 0xD7 or marker[1] == 0x01
            offset += 2 if standalone else 2 + int.from_bytes(marker[2:4], "big")
            stream.seek(start + offset)
        raise ImageLimitError(
            "ImageTooLarge",
            f"{uri}: the JPEG carries over {size_text(limit)} of metadata (APPn segments) before its "
            "pixels; it was not opened. Strip the metadata (e.g. exiftool -all=), or exclude it.",
        )
    finally:
        stream.seek(start)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PIXELS = (b"IDAT", b"fdAT")


def check_png_chunks(stream: IO[bytes], uri: str, limit: int = MAX_HEADER_BYTES) -> None:
    """ImageTooLarge when a PNG's chunks other than pixel data (IDAT, fdAT) pass `limit` bytes.

    Pillow keeps a PNG's chunks in memory, also those after the pixels (an `eXIf`, a private
    chunk), which it reads while decoding, where the open budget no longer applies. This walks the
    chunk lengths (8 bytes read per chunk, the rest skipped) and leaves `stream` where it was;
    anything that is not a PNG, or stops early, is left to Pillow.
    """
    start = stream.tell()
    try:
        if stream.read(8) != _PNG_SIGNATURE:
            return
        offset = 8
        other = 0
        while True:
            head = stream.read(8)
            if len(head) < 8:
                return
            length, kind = int.from_bytes(head[:4], "big"), head[4:]
            if kind == b"IEND":
                return
            if kind not in _PNG_PIXELS:
                other += length
                if other > limit:
                    break
            offset += 12 + length
            stream.seek(start + offset)
        raise ImageLimitError(
            "ImageTooLarge",
            f"{uri}: the PNG carries over {size_text(limit)} of chunks besides its pixels (metadata, "
            "private chunks); it was not opened. Strip them (e.g. exiftool -all= or pngcrush), or "
            "exclude it.",
        )
    finally:
        stream.seek(start)


def draft_scale(width: int, height: int, want: tuple[int, int]) -> int:
    """The DCT scale Pillow's JPEG `draft(mode, want)` picks: the largest that keeps `want`."""
    scale = min(width // max(1, want[0]), height // max(1, want[1]))
    return next(s for s in reversed(DRAFT_SCALES) if scale >= s or s == 1)


def cost_size(image: Image.Image, declared: tuple[int, int]) -> tuple[int, int]:
    """The size whose pixels a decode costs, for `check_pixels` and the pool: what it decodes to
    (`image.size`, after any `draft`), except for a progressive JPEG. libjpeg keeps a progressive
    JPEG's DCT coefficients for the whole image at its declared size (2 bytes a coefficient, up to
    6 bytes a pixel) whatever scale it outputs, so drafting does not make it cheaper: a 250 KB
    progressive JPEG declaring 13000x13000 cost 1 GB while counted as 2.6 MP."""
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        return declared
    return image.size


def check_pixels(uri: str, declared: tuple[int, int], decoded: tuple[int, int]) -> None:
    """ImageTooLarge when decoding would produce more than `MAX_DECODE_PIXELS`."""
    width, height = decoded
    if width * height <= MAX_DECODE_PIXELS:
        return
    shown = f"{declared[0]}x{declared[1]} px ({megapixels(*declared)})"
    reduced = "" if declared == decoded else f", {width}x{height} px even at the smallest JPEG scale"
    raise ImageLimitError(
        "ImageTooLarge",
        f"{uri}: the image declares {shown}{reduced}, over labelsift's decode budget of "
        f"{MAX_DECODE_PIXELS / 1e6:.0f} MP per image; it was not decoded (a decompression bomb or a "
        "very large scan). Downscale it below the budget, or exclude it.",
    )


class DecodePool:
    """A process-wide budget of bytes for decoded pixels, shared by every thread."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._free = capacity
        self._ready = threading.Condition()

    @property
    def free(self) -> int:
        with self._ready:
            return self._free

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` × BYTES_PER_PIXEL of the pool (capped at the whole pool) while decoding."""
        cost = min(self.capacity, max(0, pixels) * BYTES_PER_PIXEL)
        with self._ready:
            self._ready.wait_for(lambda: self._free >= cost)
            self._free -= cost
        try:
            yield
        finally:
            with self._ready:
                self._free += cost
                self._ready.notify_all()


def return_freed_pixels_to_the_os(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc serve every allocation of `threshold` bytes or more with its own mmap.

    Pillow allocates pixels in 16 MiB blocks. By default glibc raises its mmap threshold after the
    first such block is freed, and from then on serves them from per-thread arenas that keep the
    memory after `free`: each of 16 workers could keep the pixels of the largest image it ever
    decoded, and the pool would bound what is in use but not what is resident. A fixed threshold
    gives each freed block straight back. False where there is no glibc `mallopt` (other systems).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


return_freed_pixels_to_the_os()
# Pillow keeps a PNG's text chunks in memory while it opens it (64 MiB by default).
PngImagePlugin.MAX_TEXT_MEMORY = min(PngImagePlugin.MAX_TEXT_MEMORY, MAX_HEADER_BYTES)
DECODE_POOL = DecodePool(DECODE_POOL_BYTES)


@contextmanager
def decoded(source: bytes | IO[bytes], uri: str, draft_to: tuple[int, int]) -> Iterator[Image.Image]:
    """The image's pixels loaded within the pixel budget, the decode pool held while the caller
    works on them: the budget is checked from the header first (`ImageLimitError`, nothing
    decoded) and a JPEG is decoded at the smallest DCT scale that still covers `draft_to`."""
    with open_image(source, uri) as image:
        declared = image.size
        if image.format == "JPEG":
            image.draft("RGB", draft_to)  # no pixels yet: only the size to decode to
        cost = cost_size(image, declared)
        check_pixels(uri, declared, cost)
        with DECODE_POOL.reserve(cost[0] * cost[1]):
            image.load()
            yield image
