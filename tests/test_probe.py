"""Image header probe: formats, orientation, modes, ranged reads and failures."""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import pytest
from PIL import Image

from labelsift.probe import PROBE_STEPS, ImageHeader, ProbeError, probe, probe_bytes
from labelsift.storage import Storage, StorageError


def _load_make_images() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "fixtures" / "make_images.py"
    spec = importlib.util.spec_from_file_location("make_images", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


images = _load_make_images()


class CountingStorage(Storage):
    """Records every read so tests can prove how much of an object the probe fetched."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: list[tuple[int, int, int]] = []
        self.full_reads = 0
        self.bytes_read = 0

    def read_range(self, uri: str, start: int, length: int) -> bytes:
        data = super().read_range(uri, start, length)
        self.ranges.append((start, length, len(data)))
        self.bytes_read += len(data)
        return data

    def read(self, uri: str) -> bytes:
        data = super().read(uri)
        self.full_reads += 1
        self.bytes_read += len(data)
        return data

    def open_read(self, uri: str, **options: Any) -> IO[bytes]:  # the probe's last step: a file
        handle = super().open_read(uri, **options)
        self.full_reads += 1
        self.bytes_read += os.fstat(handle.fileno()).st_size
        return handle


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (images.make_jpeg(None, 96, 64), ImageHeader("JPEG", 96, 64, 1, "RGB")),
        (images.make_png(None, 64, 96), ImageHeader("PNG", 64, 96, 1, "RGB")),
        (images.make_image(None, "WEBP", 60, 40), ImageHeader("WEBP", 60, 40, 1, "RGB")),
        (images.make_image(None, "GIF", 60, 40, color=(3,), mode="P"), ImageHeader("GIF", 60, 40, 1, "P")),
        (images.make_image(None, "TIFF", 60, 40), ImageHeader("TIFF", 60, 40, 1, "RGB")),
        (images.make_image(None, "BMP", 60, 40), ImageHeader("BMP", 60, 40, 1, "RGB")),
        (images.make_cmyk_jpeg(None, 64, 48), ImageHeader("JPEG", 64, 48, 1, "CMYK")),
        (images.make_png16(None, 40, 30), ImageHeader("PNG", 40, 30, 1, "I;16")),
        (images.make_rgba_png(None, 50, 50), ImageHeader("PNG", 50, 50, 1, "RGBA")),
    ],
    ids=["jpeg", "png", "webp", "gif", "tiff", "bmp", "cmyk-jpeg", "png-16bit", "png-rgba"],
)
def test_probe_bytes_reads_format_size_and_mode(data: bytes, expected: ImageHeader) -> None:
    assert probe_bytes(data) == expected


@pytest.mark.parametrize(
    ("orientation", "displayed"),
    [(1, (120, 80)), (3, (120, 80)), (5, (80, 120)), (6, (80, 120)), (7, (80, 120)), (8, (80, 120))],
)
def test_exif_orientation_gives_displayed_size(orientation: int, displayed: tuple[int, int]) -> None:
    header = probe_bytes(images.make_jpeg(None, 120, 80, exif_orientation=orientation))
    assert (header.width, header.height) == displayed
    assert header.orientation == orientation


def test_out_of_range_orientation_counts_as_upright() -> None:
    header = probe_bytes(images.make_jpeg(None, 120, 80, exif_orientation=42))
    assert (header.width, header.height, header.orientation) == (120, 80, 1)


def test_tiff_orientation_tag_is_read() -> None:
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (30, 20)).save(buffer, "TIFF", exif=exif)
    assert probe_bytes(buffer.getvalue()) == ImageHeader("TIFF", 20, 30, 6, "RGB")


def test_mpo_is_reported_as_jpeg() -> None:
    buffer = io.BytesIO()
    first, second = Image.new("RGB", (40, 30), "red"), Image.new("RGB", (40, 30), "blue")
    first.save(buffer, "MPO", save_all=True, append_images=[second])
    with Image.open(io.BytesIO(buffer.getvalue())) as opened:
        assert opened.format == "MPO"
    assert probe_bytes(buffer.getvalue()).format == "JPEG"


def test_probe_bytes_needs_only_a_prefix() -> None:
    whole = images.make_jpeg(None, 1200, 900, textured=True)
    assert len(whole) > 4 * PROBE_STEPS[0]
    assert probe_bytes(whole[: PROBE_STEPS[0]]) == ImageHeader("JPEG", 1200, 900, 1, "RGB")


def test_jpeg_truncated_after_header_still_probes() -> None:
    assert probe_bytes(images.make_truncated_jpeg(None, 64, 64)) == ImageHeader("JPEG", 64, 64, 1, "RGB")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "EmptyObject"),
        (images.make_text_as_jpg(None), "NotAnImage"),
        (b"<html><body>404</body></html>", "NotAnImage"),
        (images.make_corrupt_png(None), "TruncatedHeader"),
        (images.make_jpeg(None, 64, 64)[:20], "TruncatedHeader"),
        (images.make_png(None, 64, 64)[:12], "TruncatedHeader"),
    ],
    ids=["empty", "text", "html", "corrupt-png", "jpeg-cut-in-header", "png-cut-in-header"],
)
def test_probe_bytes_failures_have_stable_codes(data: bytes, code: str) -> None:
    with pytest.raises(ProbeError) as caught:
        probe_bytes(data)
    assert caught.value.code == code
    assert caught.value.message == str(caught.value)
    assert "0x" not in str(caught.value)


def test_probe_reads_only_the_first_64k_of_a_large_jpeg_on_s3(aws_env: dict[str, str], bucket: str) -> None:
    data = images.make_jpeg(None, 1200, 900, textured=True)
    uri = f"s3://{bucket}/big.jpg"
    spy = CountingStorage()
    spy.write(uri, data)

    assert probe(spy, uri) == ImageHeader("JPEG", 1200, 900, 1, "RGB")
    assert spy.ranges == [(0, PROBE_STEPS[0], PROBE_STEPS[0])]
    assert spy.full_reads == 0
    assert spy.bytes_read < len(data) / 4


def test_probe_of_rotated_jpeg_on_s3(aws_env: dict[str, str], bucket: str) -> None:
    uri = f"s3://{bucket}/photos/rotated.jpg"
    spy = CountingStorage()
    spy.write(uri, images.make_jpeg(None, 120, 80, exif_orientation=6))
    assert probe(spy, uri) == ImageHeader("JPEG", 80, 120, 6, "RGB")


def _jpeg_with_icc(profile_size: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (50, 30)).save(buffer, "JPEG", icc_profile=b"\0" * profile_size)
    return buffer.getvalue()


def test_probe_reads_more_when_the_header_does_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "icc.jpg"
    path.write_bytes(_jpeg_with_icc(200_000))
    spy = CountingStorage()
    assert probe(spy, str(path)) == ImageHeader("JPEG", 50, 30, 1, "RGB")
    assert [length for _, length, _ in spy.ranges] == list(PROBE_STEPS)
    assert spy.full_reads == 0


def test_probe_falls_back_to_the_whole_object(tmp_path: Path) -> None:
    path = tmp_path / "huge-icc.jpg"
    path.write_bytes(_jpeg_with_icc(2_000_000))
    spy = CountingStorage()
    assert probe(spy, str(path)) == ImageHeader("JPEG", 50, 30, 1, "RGB")
    assert spy.full_reads == 1


def test_known_size_saves_reads(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    data = images.make_png(path, 10, 10)
    spy = CountingStorage()
    assert probe(spy, str(path), size=len(data)).format == "PNG"
    assert spy.ranges == [(0, len(data), len(data))]

    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ProbeError) as caught:
        probe(spy, str(empty), size=0)
    assert caught.value.code == "EmptyObject"
    assert len(spy.ranges) == 1


@pytest.mark.parametrize(
    ("name", "maker", "code"),
    [
        ("empty.jpg", images.make_zero_byte, "EmptyObject"),
        ("text.jpg", images.make_text_as_jpg, "NotAnImage"),
        ("corrupt.png", images.make_corrupt_png, "TruncatedHeader"),
    ],
)
def test_probe_failures_on_s3(
    aws_env: dict[str, str], bucket: str, name: str, maker: object, code: str
) -> None:
    storage = Storage()
    uri = f"s3://{bucket}/{name}"
    storage.write(uri, maker(None))  # type: ignore[operator]
    with pytest.raises(ProbeError) as caught:
        probe(storage, uri)
    assert caught.value.code == code


def test_probe_of_missing_object_raises_storage_error(aws_env: dict[str, str], bucket: str) -> None:
    with pytest.raises(StorageError) as caught:
        probe(Storage(), f"s3://{bucket}/missing.jpg")
    assert caught.value.code == "NoSuchKey"


def test_probe_webp_whose_decoder_needs_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "noisy.webp"
    images.noise(400, 300).save(path, "WEBP", quality=90)
    assert path.stat().st_size > PROBE_STEPS[0]
    assert probe(Storage(), str(path)) == ImageHeader("WEBP", 400, 300, 1, "RGB")


def test_standard_set_probes_as_described(tmp_path: Path) -> None:
    written = {path.name: path for path in images.write_standard_set(tmp_path)}
    assert sum(path.stat().st_size for path in written.values()) < 300_000
    storage = Storage()
    assert probe(storage, str(written["rotated-6.jpg"])) == ImageHeader("JPEG", 80, 120, 6, "RGB")
    assert probe(storage, str(written["cmyk.jpg"])).mode == "CMYK"
    assert probe(storage, str(written["grey16.png"])).mode == "I;16"
    for name, code in [
        ("empty.jpg", "EmptyObject"),
        ("text.jpg", "NotAnImage"),
        ("corrupt.png", "TruncatedHeader"),
    ]:
        with pytest.raises(ProbeError) as caught:
            probe(storage, str(written[name]))
        assert caught.value.code == code


def test_probe_gives_up_early_on_large_non_images(tmp_path: Path) -> None:
    path = tmp_path / "log.jpg"
    path.write_bytes(b"not an image at all\n" * 200_000)
    spy = CountingStorage()
    with pytest.raises(ProbeError) as caught:
        probe(spy, str(path))
    assert caught.value.code == "NotAnImage"
    assert spy.bytes_read == PROBE_STEPS[0]
