"""imageprep: bytes Rekognition accepts, changed only when they must be."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from PIL import Image

from labelsift.imageprep import ImagePrepError, PreparedImage, prepare_for_rekognition
from labelsift.service_limits import DETECT_LABELS_MAX_BYTES as MAX_BYTES


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def decode(prepared: PreparedImage) -> Image.Image:
    image = Image.open(io.BytesIO(prepared.data))
    assert image.format == prepared.format
    assert image.size == (prepared.width, prepared.height)
    return image


def marked(size: tuple[int, int]) -> Image.Image:
    """Grey image with a red block in the top-left corner (to check orientation)."""
    image = Image.new("RGB", size, (128, 128, 128))
    image.paste((255, 0, 0), (0, 0, size[0] // 4, size[1] // 4))
    return image


def with_orientation(orientation: int) -> Any:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_acceptable_images_pass_through_untouched(fmt: str) -> None:
    data = encode(marked((200, 120)), fmt)
    prepared = prepare_for_rekognition(data)
    assert prepared == PreparedImage(data, fmt, False, None, 200, 120)
    assert prepared.data is data


def test_rotated_jpeg_passes_through_with_its_exif() -> None:
    data = encode(marked((200, 120)), "JPEG", exif=with_orientation(6))
    prepared = prepare_for_rekognition(data)
    assert prepared.data is data and not prepared.transcoded


@pytest.mark.parametrize("fmt", ["WEBP", "GIF", "TIFF", "BMP"])
def test_other_formats_are_transcoded_to_jpeg(fmt: str) -> None:
    prepared = prepare_for_rekognition(encode(marked((200, 120)), fmt))
    assert prepared.transcoded and prepared.format == "JPEG"
    assert fmt in (prepared.reason or "")
    image = decode(prepared)
    assert image.size == (200, 120)
    red = image.convert("RGB").getpixel((10, 10))
    assert isinstance(red, tuple) and red[0] > 200 and red[1] < 60


def test_transparency_that_matters_keeps_png() -> None:
    image = Image.new("RGBA", (120, 120), (0, 0, 255, 0))
    image.paste((0, 0, 255, 255), (30, 30, 90, 90))
    prepared = prepare_for_rekognition(encode(image, "WEBP", lossless=True))
    assert prepared.format == "PNG"
    out = decode(prepared).convert("RGBA")
    assert out.getchannel("A").getpixel((0, 0)) == 0 and out.getpixel((60, 60)) == (0, 0, 255, 255)
    opaque = prepare_for_rekognition(encode(Image.new("RGBA", (120, 120), (0, 0, 255, 255)), "WEBP"))
    assert opaque.format == "JPEG"


def test_cmyk_jpeg_becomes_rgb() -> None:
    data = encode(Image.new("CMYK", (160, 100), (0, 255, 255, 0)), "JPEG")  # red in CMYK
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    prepared = prepare_for_rekognition(data)
    assert prepared.transcoded and prepared.format == "JPEG" and "CMYK" in (prepared.reason or "")
    image = decode(prepared)
    assert image.mode == "RGB"
    red = image.getpixel((50, 50))
    assert isinstance(red, tuple) and red[0] > 200 and red[1] < 60


def test_16_bit_png_becomes_8_bit_with_its_levels() -> None:
    image = Image.new("I;16", (100, 100), 40000)
    data = encode(image, "PNG")
    assert data[24] == 16  # IHDR bit depth
    prepared = prepare_for_rekognition(data)
    assert prepared.transcoded and "16-bit" in (prepared.reason or "")
    out = decode(prepared)
    value = out.convert("L").getpixel((50, 50))
    assert isinstance(value, int) and abs(value - 40000 // 256) <= 2


def test_oversize_bytes_are_downscaled_keeping_the_aspect() -> None:
    noise = Image.frombytes("RGB", (1800, 1200), os.urandom(1800 * 1200 * 3))
    data = encode(noise, "PNG")
    assert len(data) > MAX_BYTES
    prepared = prepare_for_rekognition(data)
    assert prepared.transcoded and len(prepared.data) <= MAX_BYTES
    assert "MiB" in (prepared.reason or "")
    assert abs(prepared.width / prepared.height - 1.5) < 0.01
    decode(prepared)


def test_sides_over_10000_are_downscaled() -> None:
    data = encode(Image.new("L", (12000, 300), 90), "PNG")
    prepared = prepare_for_rekognition(data)
    assert (prepared.width, prepared.height) == (10000, 250)
    assert "10000" in (prepared.reason or "")


def test_too_small_is_refused() -> None:
    with pytest.raises(ImagePrepError) as caught:
        prepare_for_rekognition(encode(Image.new("RGB", (79, 300)), "PNG"))
    assert caught.value.code == "ImageTooSmall"
    # Small only once rotated for display? Still too small; and a downscale that would go under 80.
    with pytest.raises(ImagePrepError) as caught:
        prepare_for_rekognition(encode(Image.new("L", (30000, 100)), "PNG"))
    assert caught.value.code == "ImageTooSmall"


@pytest.mark.parametrize("data", [b"", b"hello", b"\xff\xd8\xff\xe0 not really", b"\x89PNG\r\n\x1a\n broken"])
def test_undecodable_bytes_are_corrupt(data: bytes) -> None:
    with pytest.raises(ImagePrepError) as caught:
        prepare_for_rekognition(data)
    assert caught.value.code == "CorruptImage"


def test_exif_orientation_is_applied_when_transcoding() -> None:
    stored = marked((240, 120))  # red block top-left as stored
    data = encode(stored, "WEBP", exif=with_orientation(6))  # displayed rotated 90° clockwise
    prepared = prepare_for_rekognition(data)
    image = decode(prepared).convert("RGB")
    assert image.size == (120, 240)  # the displayed frame
    top_right = image.getpixel((110, 10))  # orientation 6: stored top-left shows at top-right
    top_left = image.getpixel((10, 10))
    assert isinstance(top_right, tuple) and top_right[0] > 200 and top_right[1] < 60
    assert isinstance(top_left, tuple) and top_left[0] < 160
    assert 0x0112 not in image.getexif() or image.getexif()[0x0112] == 1


def test_oversize_rotated_jpeg_is_downscaled_in_the_displayed_frame() -> None:
    stored = marked((10400, 200))
    data = encode(stored, "JPEG", exif=with_orientation(8), quality=50)
    prepared = prepare_for_rekognition(data)
    assert prepared.transcoded
    assert (prepared.width, prepared.height) == (192, 10000)
