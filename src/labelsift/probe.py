"""Image header probe: format, displayed size, EXIF orientation and mode from the first bytes.

Pillow opens images lazily, so parsing a prefix of the file never decodes pixels. `probe` reads
64 KiB first and only reads more when the header does not fit (large EXIF blocks, TIFF IFDs at
the end of the file, WebP): 1 MiB, then the object as a file (a local file in place, an S3 object
spooled to disk), never whole in memory and never over `imagelimits.MAX_OBJECT_BYTES`. A header
over Pillow's own pixel limit is `ImageTooLarge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from PIL import Image, TiffImagePlugin, UnidentifiedImageError

from labelsift.imagelimits import MAX_OBJECT_BYTES, ImageLimitError, open_image
from labelsift.storage import Storage, StorageError

PROBE_STEPS = (64 * 1024, 1024 * 1024)
EXIF_ORIENTATION = 0x0112
TIFF_WIDTH, TIFF_LENGTH = 256, 257
SWAPPED_ORIENTATIONS = frozenset({5, 6, 7, 8})
FORMAT_ALIASES = {"MPO": "JPEG"}
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")  # JPEG opens MPO files too
IMAGE_SIGNATURES = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
)


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    orientation: int
    mode: str


class ProbeError(Exception):
    """The bytes are not a readable image.

    `code`: EmptyObject, NotAnImage, TruncatedHeader, ImageTooLarge (pixels), TooLarge (bytes).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[object, ...]:
        return (self.__class__, (self.code, self.message))


def _looks_like_image(data: bytes) -> bool:
    return data.startswith(IMAGE_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def orientation_of(image: Image.Image) -> int:
    """The EXIF orientation without decoding pixels (PNG's getexif() would load the whole image)."""
    try:
        if image.format == "TIFF":
            value = image.getexif().get(EXIF_ORIENTATION)
        else:
            raw = image.info.get("exif")
            if not isinstance(raw, bytes | bytearray):
                return 1
            exif = Image.Exif()
            exif.load(bytes(raw))
            value = exif.get(EXIF_ORIENTATION)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _stored_size(image: Image.Image) -> tuple[int, int]:
    """Width and height as stored. Recent Pillow reports a TIFF's size already oriented."""
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        width, height = image.tag_v2.get(TIFF_WIDTH), image.tag_v2.get(TIFF_LENGTH)
        if isinstance(width, int) and isinstance(height, int):
            return width, height
    return image.size


def _parse(data: bytes | IO[bytes], uri: str = "the image") -> ImageHeader:
    with open_image(data, uri, formats=FORMATS) as image:
        orientation = orientation_of(image)
        width, height = _stored_size(image)
        if orientation in SWAPPED_ORIENTATIONS:
            width, height = height, width
        fmt = image.format or "UNKNOWN"
        return ImageHeader(FORMAT_ALIASES.get(fmt, fmt), width, height, orientation, image.mode)


def _failure(data: bytes, error: Exception) -> ProbeError:
    if not data:
        return ProbeError("EmptyObject", "The object is empty (0 bytes); delete or re-upload it.")
    if isinstance(error, ImageLimitError):
        return ProbeError(error.code, error.message)
    if _looks_like_image(data):
        detail = "" if isinstance(error, UnidentifiedImageError) else f" ({error})"
        return ProbeError(
            "TruncatedHeader",
            f"The file starts like an image but its header is truncated or corrupt{detail}; "
            "re-upload or re-export it.",
        )
    return _not_an_image()


def _not_an_image() -> ProbeError:
    return ProbeError(
        "NotAnImage", "The object is not a JPEG, PNG, WebP, GIF, TIFF or BMP image; exclude or convert it."
    )


def probe_bytes(data: bytes, uri: str = "the image") -> ImageHeader:
    """Parse an image header from `data`, which may be just the beginning of the file."""
    if not data:
        raise _failure(data, ValueError("empty"))
    try:
        return _parse(data, uri)
    except Exception as error:
        raise _failure(data, error) from error


def probe(storage: Storage, uri: str, size: int | None = None, etag: str | None = None) -> ImageHeader:
    """Probe the object at `uri` with ranged reads: 64 KiB, then 1 MiB, then the whole object.

    `size`, when known (from a listing), saves a read for small objects. With `etag` (from the same
    listing) every read is conditional: an object replaced since raises StorageError("Changed"),
    so a header is never paired with another version's etag. StorageError passes through.
    """
    if size == 0:
        raise _failure(b"", ValueError("empty"))
    for step in PROBE_STEPS:
        want = step if size is None else min(step, size)
        data = storage.read_range(uri, 0, want, if_match=etag) if etag else storage.read_range(uri, 0, want)
        complete = len(data) < want or (size is not None and len(data) >= size)
        if complete:
            return probe_bytes(data, uri)
        if not _looks_like_image(data):
            raise _not_an_image()
        try:
            return _parse(data, uri)
        except ImageLimitError as error:
            raise _failure(data, error) from error
        except Exception:
            continue
    return _probe_whole(storage, uri, etag)


def _probe_whole(storage: Storage, uri: str, etag: str | None) -> ImageHeader:
    """The header from the whole object, read as a file (local in place, S3 spooled), never into memory."""
    try:
        with storage.open_read(uri, limit=MAX_OBJECT_BYTES, if_match=etag) as handle:
            head = handle.read(PROBE_STEPS[0])
            handle.seek(0)
            try:
                return _parse(handle, uri)
            except Exception as error:
                raise _failure(head, error) from error
    except StorageError as error:
        if error.code == "TooLarge":
            raise ProbeError(error.code, error.message) from error
        raise
