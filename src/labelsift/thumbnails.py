"""Small previews of images as shown (EXIF orientation applied), read within the scan's memory limits."""

from __future__ import annotations

import io
from typing import IO

from PIL import Image, ImageOps

from labelsift.imagelimits import decoded


def preview(source: bytes | IO[bytes], max_px: int = 512, uri: str = "the image") -> Image.Image:
    """The image as shown (EXIF orientation applied), RGB, scaled to fit `max_px` on each side.

    The pixel budget is checked from the header first (`ImageLimitError`, nothing decoded); a
    JPEG is decoded at a reduced DCT scale, anything else reduced right after decoding.
    """
    with decoded(source, uri, (max_px, max_px)) as opened:
        opened.thumbnail((max_px, max_px), Image.Resampling.LANCZOS)  # a square box: either frame
        image: Image.Image = opened
        ImageOps.exif_transpose(image, in_place=True)
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
            return flat
        return image.convert("RGB") if image.mode != "RGB" else image.copy()


def jpeg_bytes(image: Image.Image, quality: int = 85, *, sharp_colour: bool = False) -> bytes:
    """JPEG bytes; `sharp_colour` keeps full-resolution colour (4:4:4), so thin coloured lines drawn
    on the image keep their colour instead of bleeding into their neighbours."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, subsampling=0 if sharp_colour else -1)
    return out.getvalue()


def thumbnail(source: bytes | IO[bytes], max_px: int = 512, uri: str = "the image") -> tuple[bytes, int, int]:
    """`preview` as JPEG bytes, with its width and height."""
    image = preview(source, max_px, uri)
    return jpeg_bytes(image), image.width, image.height
