"""Shared helpers for the export tests (records, small JPEGs), and tests of the shared pieces."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from labelsift.exporters.common import check_relative, class_names, safe_stem, split_for
from labelsift.exporters.summary import ExportSummary
from labelsift.manifest import write_records
from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, ScanStatus, Verdict
from labelsift.select import Selection

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


def detector_modules() -> list[str]:
    return [m for m in sys.modules if m.startswith("labelsift.detectors.") and not m.endswith(".base")]


# -- tests of the shared pieces ------------------------------------------------------------------


def test_split_is_a_function_of_the_source_alone() -> None:
    sources = [f"s3://b/k/{i}.jpg" for i in range(2000)]
    first = {s: split_for(s, 0.2) for s in sources}
    more = [f"s3://b/new/{i}.jpg" for i in range(500)]
    again = {s: split_for(s, 0.2) for s in [*more, *sources]}
    assert all(again[s] == first[s] for s in sources)
    share = Counter(first.values())["val"] / len(sources)
    assert 0.15 < share < 0.25
    assert {split_for(s, 0.0) for s in sources} == {"train"}
    assert {split_for(s, 1.0) for s in sources} == {"val"}


def test_safe_names_are_unique_single_segments() -> None:
    a = safe_stem("s3://b/cats/img.jpg")
    b = safe_stem("s3://b/dogs/img.jpg")
    c = safe_stem("s3://other/cats/img.jpg")
    d = safe_stem("/data/../etc/passwd")
    assert len({a, b, c}) == 3
    for stem in (a, b, c, d, safe_stem("s3://b/" + "x" * 500 + ".jpg"), safe_stem("s3://b/..")):
        assert "/" not in stem and stem not in (".", "..") and not stem.startswith(".")
        assert len(stem) <= 113
    assert a.startswith("cats_img-")


def test_relative_paths_never_climb_out() -> None:
    assert check_relative("Bird/a/b.jpg") == "Bird/a/b.jpg"
    for bad in ("../x", "a/../../x", "/abs", "a//b", "a/./b", "a\\b", ""):
        with pytest.raises(ValueError):
            check_relative(bad)


def test_class_names_follow_the_selection_order_and_renames() -> None:
    selection = Selection(("Dog", "bird"))
    assert class_names(selection, None) == ["Dog", "bird"]
    assert class_names(selection, {"BIRD": "aves"}) == ["Dog", "aves"]
    with pytest.raises(ValueError):
        class_names(selection, {"cat": "x"})
    with pytest.raises(ValueError):
        class_names(selection, {"bird": "dog"})


def test_summary_keeps_counts_complete_when_details_are_capped() -> None:
    summary = ExportSummary.start("x", "m", "d", ["a"], detail_limit=3)
    for i in range(10):
        summary.skip(f"s{i}", "bad", "why")
        summary.violate(i + 1, "rule", "why")
    assert summary.skipped == {"bad": 10} and len(summary.skipped_images) == 3
    assert summary.violations == {"rule": 10} and len(summary.violation_lines) == 3
    assert summary.details_truncated
