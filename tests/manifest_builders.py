"""Builders for the records and manifests tests write: boxes, labels, records (labelled or failed),
small JPEGs and manifest files."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from labelsift.manifest import write_records
from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, ScanStatus, Verdict

DETECTOR = DetectorInfo(name="test", model_version="1")


def box(left: float, top: float, width: float, height: float, confidence: float = 95.0) -> Instance:
    return Instance(left=left, top=top, width=width, height=height, confidence=confidence)


def label(
    name: str,
    confidence: float,
    *instances: Instance,
    parents: tuple[str, ...] = (),
    aliases: tuple[str, ...] = (),
) -> Label:
    return Label(
        name=name,
        confidence=confidence,
        parents=list(parents),
        aliases=list(aliases),
        instances=list(instances),
    )


def record(
    source: str,
    *labels: Label,
    width: int | None = 200,
    height: int | None = 100,
    fmt: str = "JPEG",
    size: int = 5000,
    orientation: int | None = None,
    review: tuple[Verdict, ...] = (),
) -> ImageRecord:
    return ImageRecord(
        source=source,
        width=width,
        height=height,
        format=fmt,
        size=size,
        orientation=orientation,
        status=ScanStatus.LABELED,
        detector=DETECTOR,
        labels=list(labels),
        review=list(review),
    )


def failed(source: str) -> ImageRecord:
    from labelsift.models import Reason

    return ImageRecord(source=source, status=ScanStatus.ERROR, error=Reason(code="Boom", message="x"))


def make_jpeg(path: Path, width: int, height: int, orientation: int | None = None) -> Path:
    """A small JPEG stored as width x height; with an EXIF orientation tag if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (width, height), (120, 160, 200))
    if orientation is None:
        image.save(path, "JPEG")
    else:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, "JPEG", exif=exif.tobytes())
    return path


def write_manifest(path: Path, records: list[ImageRecord]) -> str:
    write_records(str(path), records)
    return str(path)
