"""An image re-encoded in its displayed frame: EXIF orientation applied, the tag dropped.

Exports copy images unchanged, except those whose EXIF orientation is not 1: a loader that
ignores the tag (Datumaro, many training scripts) would see their pixels turned while the boxes
are in the displayed frame. Those are decoded within the image limits, turned, and written in the
same format (JPEG at quality 95 with its ICC profile and other EXIF kept; other formats as
Pillow writes them; a format Pillow cannot write becomes PNG).
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps

from labelsift.imagelimits import decoded

FULL_SIZE = (1 << 30, 1 << 30)  # ask JPEG draft decoding for the full scale
_WRITABLE = {
    "JPEG": "JPEG",
    "MPO": "JPEG",
    "PNG": "PNG",
    "WEBP": "WEBP",
    "TIFF": "TIFF",
    "BMP": "BMP",
    "GIF": "GIF",
}


def upright_bytes(data: bytes, uri: str) -> bytes:
    """`data` re-encoded in its displayed frame (raises `ImageLimitError`, or OSError when unreadable)."""
    with decoded(io.BytesIO(data), uri, FULL_SIZE) as image:
        fmt = _WRITABLE.get(image.format or "", "PNG")
        icc = image.info.get("icc_profile")
        turned = ImageOps.exif_transpose(image)
        exif = turned.getexif()
        exif.pop(0x0112, None)
        out = io.BytesIO()
        options: dict[str, object] = (
            {"exif": exif.tobytes()} if fmt in ("JPEG", "PNG", "WEBP", "TIFF") else {}
        )
        if icc:
            options["icc_profile"] = icc
        if fmt == "JPEG":
            turned = turned.convert("RGB") if turned.mode not in ("RGB", "L", "CMYK") else turned
            options |= {"quality": 95}
        turned.save(out, fmt, **options)
        return out.getvalue()


def displayed_size(data: bytes) -> tuple[int, int]:
    """(width, height) as shown: for tests and checks."""
    with Image.open(io.BytesIO(data)) as image:
        return ImageOps.exif_transpose(image).size
