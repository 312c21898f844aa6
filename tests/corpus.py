"""The bad-input corpus: every dirty object a real bucket holds, generated in memory (nothing committed).

Each `Case` is one object: its key, its bytes, and the outcome labelsift must record for it with
each detector (`rekognition` against the S3 server and the local endpoint; `local` on a folder
copy). `docs/reliability.md` mirrors the table in `CASES`.

Keys that cannot exist on the test S3 server (SeaweedFS drops a leading `/` and refuses `..`
segments) are covered from a manifest instead: see `UNSTORABLE_KEYS`.
"""

from __future__ import annotations

import functools
import io
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from labelsift.demo import photos
from labelsift_testing.fake_rekognition import make_image, scene_comment

LABELED = ("labeled", None)


@dataclass(frozen=True)
class Case:
    key: str
    make: Callable[[], bytes]
    rekognition: tuple[str, str | None]  # (status, reason code) after a scan with Rekognition
    local: tuple[str, str | None]  # the same with the local detector on a folder copy
    why: str
    s3_only: bool = False  # a race or storage-class case that only S3 can stage
    storage_class: str | None = None
    displayed: tuple[int, int] | None = None  # (width, height) the manifest must record


BIRD_MARKER = scene_comment("bird", 91.0).encode()  # what the Rekognition endpoint sees in a JPEG


@functools.cache
def _photo() -> Image.Image:
    """The bundled dog photo at 320x240: real content, so the local model finds boxes too."""
    with Image.open(photos() / "dog.jpg") as image:
        return image.convert("RGB").resize((320, 240))


def _picture(size: tuple[int, int] = (320, 240), seed: int = 0) -> Image.Image:
    """The photo with a small square whose colour depends on `seed`: every case has its own pixels."""
    image = _photo().resize(size) if size != (320, 240) else _photo().copy()
    ImageDraw.Draw(image).rectangle((0, 0, 7, 7), fill=(seed * 37 % 256, seed * 91 % 256, 200))
    return image


def _bird(size: tuple[int, int] = (320, 240), seed: int = 0) -> bytes:
    """A JPEG of the photo marked `bird` for the Rekognition endpoint; `seed` varies the bytes."""
    return _encode(_picture(size, seed), "JPEG", quality=85, comment=BIRD_MARKER)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def truncated_jpeg() -> bytes:
    rng = random.Random(7)
    noisy = Image.frombytes("RGB", (320, 240), rng.randbytes(320 * 240 * 3))
    whole = _encode(noisy, "JPEG", quality=90)
    return whole[: len(whole) // 2]


def corrupt_png() -> bytes:
    whole = bytearray(_encode(_picture(seed=17), "PNG"))
    whole[16:29] = b"\xff" * 13  # IHDR's width, height, depth, ... and a broken CRC
    return bytes(whole)


def cmyk_jpeg() -> bytes:
    return _encode(_picture(seed=15).convert("CMYK"), "JPEG", quality=90)


def png16() -> bytes:
    return _encode(Image.linear_gradient("L").resize((320, 240)).convert("I;16"), "PNG")


def alpha_png() -> bytes:
    image = _picture(seed=16).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize(image.size))
    return _encode(image, "PNG")


def over_15_mb() -> bytes:
    """Uncompressed noise PNG just over 15 MiB (encoding with compress_level=0 takes ~0.1 s)."""
    width, height = 2400, 2200
    noisy = Image.frombytes("RGB", (width, height), random.Random(15).randbytes(width * height * 3))
    data = _encode(noisy, "PNG", compress_level=0)
    assert len(data) > 15 * 1024 * 1024
    return data


def very_wide() -> bytes:
    return _encode(Image.linear_gradient("L").resize((10050, 100)).convert("RGB"), "PNG")


def rotated_6() -> bytes:
    """Stored 320x240 with EXIF orientation 6: displayed 240x320."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(_picture(seed=18), "JPEG", exif=exif.tobytes(), comment=BIRD_MARKER)


SKIPPED = "skipped"

CASES: tuple[Case, ...] = (
    Case("bad/empty.jpg", lambda: b"", (SKIPPED, "EmptyObject"), (SKIPPED, "EmptyObject"), "zero bytes"),
    Case(
        "bad/truncated.jpg",
        truncated_jpeg,
        LABELED,
        (SKIPPED, "CorruptImage"),
        "the header is whole, the pixels are cut: Rekognition (S3Object) reads what it can; the local "
        "model must decode every pixel",
    ),
    Case(
        "bad/corrupt.png",
        corrupt_png,
        (SKIPPED, "TruncatedHeader"),
        (SKIPPED, "TruncatedHeader"),
        "PNG signature, damaged IHDR",
    ),
    Case(
        "bad/text.jpg",
        lambda: b"This is a text file, not a JPEG.\n",
        (SKIPPED, "NotAnImage"),
        (SKIPPED, "NotAnImage"),
        "text named .jpg",
    ),
    Case(
        "formats/picture.webp",
        lambda: _encode(_picture(seed=11), "WEBP", lossless=True),
        LABELED,
        LABELED,
        "transcoded to JPEG in memory, sent as bytes",
    ),
    Case(
        "formats/picture.gif",
        lambda: _encode(_picture(seed=12).convert("P"), "GIF"),
        LABELED,
        LABELED,
        "transcoded",
    ),
    Case("formats/picture.tiff", lambda: _encode(_picture(seed=13), "TIFF"), LABELED, LABELED, "transcoded"),
    Case("formats/picture.bmp", lambda: _encode(_picture(seed=14), "BMP"), LABELED, LABELED, "transcoded"),
    Case("formats/cmyk.jpg", cmyk_jpeg, LABELED, LABELED, "sent as is; transcoded if refused"),
    Case("formats/grey16.png", png16, LABELED, LABELED, "16-bit PNG"),
    Case("formats/alpha.png", alpha_png, LABELED, LABELED, "alpha PNG"),
    Case(
        "size/over-15mb.png",
        over_15_mb,
        LABELED,
        LABELED,
        "over the 15 MB S3Object limit: downscaled under 5 MiB, sent as bytes",
    ),
    Case(
        "size/tiny.jpg",
        lambda: _bird((60, 60)),
        (SKIPPED, "ImageTooSmall"),
        LABELED,
        "a side under 80 px: not sent (Rekognition would refuse it and still take a call)",
        displayed=(60, 60),
    ),
    Case(
        "size/wide.png",
        very_wide,
        LABELED,
        LABELED,
        "a side over 10,000 px: downscaled, sent as bytes",
        displayed=(10050, 100),
    ),
    Case(
        "exif/rotated-6.jpg",
        rotated_6,
        LABELED,
        LABELED,
        "EXIF orientation 6: size recorded in the displayed frame",
        displayed=(240, 320),
    ),
    Case(
        "archive/glacier.jpg",
        lambda: _bird(seed=3),
        (SKIPPED, "ArchivedObject"),
        LABELED,
        "GLACIER object: GetObject answers InvalidObjectState (staged by the fault proxy)",
        storage_class="GLACIER",
    ),
    Case(
        "race/vanished.jpg",
        lambda: _bird(seed=4),
        (SKIPPED, "Vanished"),
        LABELED,
        "deleted after listing, before labelling",
        s3_only=True,
    ),
    Case(
        "race/changed.jpg",
        lambda: _bird(seed=5),
        LABELED,
        LABELED,
        "replaced after listing: the new object is labelled and its new etag recorded",
        s3_only=True,
    ),
    # Hostile names: each a plain bird JPEG, labelled and exported like any other.
    *(
        Case(f"names/{name}", lambda i=i: _bird(seed=100 + i), LABELED, LABELED, why)
        for i, (name, why) in enumerate(
            [
                ("with space.jpg", "space"),
                ("plus+sign.jpg", "plus (not a space)"),
                ("100%.jpg", "percent"),
                ("%2F-encoded.jpg", "a percent-encoded slash, literally"),
                ("hash#tag.jpg", "hash"),
                ("what?.jpg", "question mark"),
                ("ünïcødé-鳥.jpg", "unicode"),
                ("deep/er/nested.jpg", "nested folders"),
            ]
        )
    ),
)

# Keys S3 allows but the test server cannot store: checked through the exporters from a manifest.
UNSTORABLE_KEYS = ("/leading-slash.jpg", "a/../../escape.jpg", "../escape-too.jpg", "b/./dot.jpg")

REPLACEMENT_SCENE = "dog"  # what race/changed.jpg holds after it is replaced


def replacement_image() -> bytes:
    return make_image(REPLACEMENT_SCENE, confidence=93.0, seed=55)


def write_folder(root: Path, cases: tuple[Case, ...] = CASES) -> dict[str, bytes]:
    """Write the cases that a folder can hold under `root`; returns key -> bytes."""
    written: dict[str, bytes] = {}
    for case in cases:
        if case.s3_only:
            continue
        data = case.make()
        path = root.joinpath(*case.key.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written[case.key] = data
    return written
