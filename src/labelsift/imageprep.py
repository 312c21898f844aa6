"""Make image bytes Rekognition will accept, in memory, changing them only when it must.

Rekognition's `Image.Bytes` takes JPEG or PNG, at most 5 MiB, each side 80..10000 pixels.

- A JPEG/PNG within those limits passes through untouched (same bytes).
- WebP, GIF, TIFF, BMP (any other format Pillow reads), CMYK/YCCK JPEG and 16-bit PNG are
  transcoded: JPEG quality 90, or PNG when the image has transparency that is actually used.
- Over 5 MiB or a side over 10000 px: downscaled, aspect ratio kept, until it fits.
- A side under 80 px (in the displayed frame): `ImagePrepError("ImageTooSmall")`, before any call.
- Bytes Pillow cannot read: `ImagePrepError("CorruptImage")`.
- More pixels to decode than `labelsift.imagelimits.MAX_DECODE_PIXELS` (after JPEG DCT scaling),
  seen from the header: `ImagePrepError("ImageTooLarge")`, before any pixel is decoded. Decodes
  hold their share of the process-wide `DECODE_POOL` while they run.

Geometry: whenever the pixels are re-encoded, EXIF orientation is applied first
(`ImageOps.exif_transpose`), so the prepared image is the *displayed* frame. Untouched JPEGs keep
their EXIF tag and Rekognition applies it itself (AWS: box coordinates are translated to the
orientation-corrected image), so boxes are always ratios of the displayed image. Rekognition
reports boxes as ratios of the image side; a uniform downscale multiplies both sides by the same
factor, so those ratios stay valid for the original image: no box is ever rescaled.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageOps, UnidentifiedImageError

from labelsift.imagelimits import (
    DECODE_POOL,
    DRAFT_SCALES,
    MAX_DRAFT_PIXELS,
    ImageLimitError,
    check_pixels,
    cost_size,
    draft_scale,
    open_image,
)
from labelsift.probe import orientation_of
from labelsift.service_limits import DETECT_LABELS_MAX_BYTES as MAX_BYTES
from labelsift.service_limits import DETECT_LABELS_MAX_SIDE as MAX_SIDE
from labelsift.service_limits import DETECT_LABELS_MIN_SIDE as MIN_SIDE

JPEG_QUALITY = 90
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "MPO"})  # MPO is a JPEG with extra frames appended
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_ROTATED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height


class ImagePrepError(ValueError):
    """The image cannot be made acceptable. `code`: ImageTooSmall | CorruptImage | ImageTooLarge."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PreparedImage:
    data: bytes
    format: str  # "JPEG" or "PNG"
    transcoded: bool
    reason: str | None  # why the bytes were changed; None when they pass through
    width: int  # of the prepared image (the displayed frame when transcoded)
    height: int


def _png_bit_depth(data: bytes) -> int | None:
    if data.startswith(_PNG_MAGIC) and data[12:16] == b"IHDR" and len(data) > 24:
        return data[24]
    return None


def _has_used_alpha(image: Image.Image) -> bool:
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = image.getchannel("A")
        low, _high = alpha.getextrema()
        return bool(low < 255)  # type: ignore[operator]
    if image.mode == "P" and "transparency" in image.info:
        return _has_used_alpha(image.convert("RGBA"))
    return False


def _to_8bit(image: Image.Image) -> Image.Image:
    """A mode JPEG or PNG encoders take at 8 bits per channel."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return image.convert("I").point(lambda value: value / 256).convert("L")
    if image.mode == "F":
        return image.point(lambda value: value * 255 if value <= 1.0 else value).convert("L")
    return image


def _encode(image: Image.Image, keep_alpha: bool) -> tuple[bytes, str]:
    out = io.BytesIO()
    image = _to_8bit(image)
    if keep_alpha:
        image.convert("RGBA").save(out, format="PNG", optimize=False)
        return out.getvalue(), "PNG"
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue(), "JPEG"


def _fit_scale(width: int, height: int) -> float:
    return min(1.0, MAX_SIDE / max(width, height))


def _check_not_too_small(width: int, height: int, scale: float = 1.0) -> None:
    w, h = max(1, math.floor(width * scale)), max(1, math.floor(height * scale))
    if min(w, h) < MIN_SIDE:
        if scale < 1.0:
            raise ImagePrepError(
                "ImageTooSmall",
                f"the image is {width}x{height} px; fitting it into Rekognition's limits (5 MiB, "
                f"{MAX_SIDE} px a side) would leave a side under {MIN_SIDE} px. Crop it first.",
            )
        raise ImagePrepError(
            "ImageTooSmall",
            f"the image is {width}x{height} px; Rekognition needs at least {MIN_SIDE} px on each side. "
            "It was not sent (no charge).",
        )


def _byte_size(source: bytes | IO[bytes]) -> int:
    if isinstance(source, bytes | bytearray):
        return len(source)
    position = source.tell()
    size = source.seek(0, io.SEEK_END)
    source.seek(position)
    return size


def _open(source: bytes | IO[bytes], uri: str) -> Image.Image:
    try:
        return open_image(source, uri)
    except ImageLimitError as error:
        raise ImagePrepError(error.code, error.message) from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImagePrepError(
            "CorruptImage", f"the bytes are not an image Pillow can read ({error})."
        ) from error


def _reasons(image: Image.Image, head: bytes, size: int) -> list[str]:
    """Why the stored image cannot be sent as it is (empty: it can)."""
    stored_format = image.format or "unknown"
    width, height = image.size
    reasons: list[str] = []
    if stored_format not in ACCEPTED_FORMATS:
        reasons.append(f"{stored_format} is not accepted by Rekognition (JPEG or PNG only)")
    elif stored_format in ("JPEG", "MPO") and image.mode in ("CMYK", "YCCK"):
        reasons.append(f"{image.mode} JPEG")
    elif stored_format == "PNG" and _png_bit_depth(head) == 16:
        reasons.append("16-bit PNG")
    if max(width, height) > MAX_SIDE:
        reasons.append(f"a side of {max(width, height)} px is over the {MAX_SIDE} px limit")
    if size > MAX_BYTES:
        reasons.append(f"{size / 2**20:.1f} MiB is over the 5 MiB limit")
    return reasons


def _draft_within_budget(image: Image.Image, scale: float, uri: str) -> None:
    """Let libjpeg decode a JPEG at a reduced size: never under the target unless that is over
    `MAX_DRAFT_PIXELS`, then at the first DCT scale under it (or the smallest there is). Any
    format: ImageTooLarge when the pixels to decode are over `MAX_DECODE_PIXELS`."""
    width, height = image.size
    if image.format == "JPEG":
        want = (math.ceil(width * scale), math.ceil(height * scale))
        step = draft_scale(width, height, want)
        pixels = {s: -(-width // s) * -(-height // s) for s in DRAFT_SCALES if s >= step}
        fits = [s for s, count in pixels.items() if count <= MAX_DRAFT_PIXELS]
        step = fits[0] if fits else DRAFT_SCALES[-1]
        if step > 1:
            image.draft(image.mode, (width // step, height // step))  # Pillow then picks `step`
    try:
        check_pixels(uri, (width, height), cost_size(image, (width, height)))  # what `load()` costs
    except ImageLimitError as error:
        raise ImagePrepError(error.code, error.message) from error


def prepare_for_rekognition(source: bytes | IO[bytes], uri: str = "the image") -> PreparedImage:
    """Bytes for `Image.Bytes`: untouched when acceptable, otherwise transcoded or downscaled.

    `source` is the encoded image, as bytes or as a seekable file (never read whole unless it is
    sent untouched, which means at most 5 MiB). Nothing is decoded before the pixel budget
    (`labelsift.imagelimits`) is checked from the header.
    """
    size = _byte_size(source)
    head = source[:64] if isinstance(source, bytes | bytearray) else _peek(source, 64)
    image = _open(source, uri)
    width, height = image.size
    orientation = orientation_of(image)
    shown_w, shown_h = (height, width) if orientation in _ROTATED else (width, height)
    _check_not_too_small(shown_w, shown_h)
    reasons = _reasons(image, head, size)
    if not reasons:
        fmt = "JPEG" if image.format == "MPO" else str(image.format)
        data = bytes(source) if isinstance(source, bytes | bytearray) else _read_all(source)
        return PreparedImage(data, fmt, False, None, width, height)

    scale = _fit_scale(shown_w, shown_h)
    _check_not_too_small(shown_w, shown_h, scale)
    _draft_within_budget(image, scale, uri)
    cost = cost_size(image, (width, height))
    with DECODE_POOL.reserve(cost[0] * cost[1]):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
        except (OSError, ValueError, SyntaxError) as error:
            raise ImagePrepError("CorruptImage", f"the image could not be decoded ({error}).") from error
        # A JPEG drafted under the target (to stay in the budget) is sent at the drafted size.
        scale = min(scale, image.size[0] / shown_w)
        encoded, fmt, target = _fit_bytes(image, shown_w, shown_h, scale)
    if target != (shown_w, shown_h):
        reasons.append(f"downscaled from {shown_w}x{shown_h} to {target[0]}x{target[1]}")
    return PreparedImage(encoded, fmt, True, "; ".join(reasons), target[0], target[1])


def _fit_bytes(
    shown: Image.Image, full_w: int, full_h: int, scale: float
) -> tuple[bytes, str, tuple[int, int]]:
    """Encode `shown` at `scale` of the displayed size, shrinking until it is under 5 MiB."""
    keep_alpha = _has_used_alpha(shown)
    while True:
        target = (max(1, round(full_w * scale)), max(1, round(full_h * scale)))
        resized = shown if target == shown.size else shown.resize(target, Image.Resampling.LANCZOS)
        encoded, fmt = _encode(resized, keep_alpha)
        del resized
        if len(encoded) <= MAX_BYTES:
            return encoded, fmt, target
        # Shrink by the area ratio (a bit more, for safety) and try again.
        scale *= min(0.9, math.sqrt(MAX_BYTES / len(encoded)) * 0.95)
        _check_not_too_small(full_w, full_h, scale)


def _peek(handle: IO[bytes], count: int) -> bytes:
    position = handle.tell()
    data = handle.read(count)
    handle.seek(position)
    return data


def _read_all(handle: IO[bytes]) -> bytes:
    handle.seek(0)
    return handle.read()
