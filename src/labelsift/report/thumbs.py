"""Thumbnails of the sampled images with the label's boxes drawn, read like the scan reads images."""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Protocol

from PIL import ImageDraw, UnidentifiedImageError

from labelsift.imagelimits import MAX_OBJECT_BYTES, ImageLimitError
from labelsift.storage import StorageError
from labelsift.thumbnails import jpeg_bytes, preview

from .collect import Sample

THUMB_PX = 240
BOX_COLOUR = (255, 0, 0)


class Reader(Protocol):
    def open_read(self, uri: str, *, limit: int | None) -> IO[bytes]: ...


def draw_sample(sample: Sample, data: IO[bytes], max_px: int = THUMB_PX) -> bytes:
    """The sample's image as shown, fitted to `max_px`, its boxes drawn in red, as JPEG bytes."""
    image = preview(data, max_px, uri=sample.source)
    draw = ImageDraw.Draw(image)
    width, height = image.size
    line = max(3, round(max(width, height) / 80))
    for box in sample.boxes:
        left = max(0.0, min(1.0, box["left"])) * width
        top = max(0.0, min(1.0, box["top"])) * height
        right = max(0.0, min(1.0, box["left"] + box["width"])) * width
        bottom = max(0.0, min(1.0, box["top"] + box["height"])) * height
        if right - left >= 1 and bottom - top >= 1:
            draw.rectangle((left, top, right - 1, bottom - 1), outline=BOX_COLOUR, width=line)
    return jpeg_bytes(image, quality=90, sharp_colour=True)


def fill_thumbnails(samples: Iterable[Sample], storage: Reader, max_px: int = THUMB_PX) -> None:
    """Give every sample its thumbnail, or the reason it has none (a bad image never stops a report)."""
    for sample in samples:
        try:
            with storage.open_read(sample.source, limit=MAX_OBJECT_BYTES) as handle:
                sample.thumbnail = draw_sample(sample, handle, max_px)
        except ImageLimitError as exc:
            sample.problem = exc.message
        except StorageError as exc:
            sample.problem = str(exc)
        except UnidentifiedImageError:
            sample.problem = f"{sample.source}: not an image Pillow can read"
        except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for damaged data
            sample.problem = f"{sample.source}: cannot be decoded ({type(exc).__name__}: {str(exc)[:120]})"
