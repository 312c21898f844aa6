from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from manifest_builders import box, label, record, write_manifest

from labelsift.exporters.groundtruth import export_groundtruth
from labelsift.exporters.validation import CustomLabelsChecker, validate_lines
from labelsift.models import Verdict
from labelsift.select import Selection

WHEN = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)


def assert_custom_labels_valid(lines: list[dict[str, Any]]) -> None:
    """The Custom Labels manifest rules, written out independently of the exporter's checker."""
    assert 0 < len(lines) <= 250_000
    classes: set[str] = set()
    for line in lines:
        assert line["source-ref"].startswith("s3://") and "/" in line["source-ref"][5:]
        attrs = [k for k in line if k != "source-ref" and not k.endswith("-metadata")]
        assert attrs and len(attrs) <= 50
        for attr in attrs:
            assert "-metadata" not in attr and not attr.endswith("-ref")
            meta = line[f"{attr}-metadata"]
            assert meta["human-annotated"] in ("yes", "no")
            datetime.fromisoformat(meta["creation-date"])
            assert meta["job-name"] == f"labeling-job/{attr}"
            if meta["type"] == "groundtruth/image-classification":
                assert isinstance(line[attr], int) and 0 <= meta["confidence"] <= 1 and meta["class-name"]
                classes.add(meta["class-name"])
                continue
            assert meta["type"] == "groundtruth/object-detection"
            (size,) = line[attr]["image_size"]
            assert size["depth"] == 3
            w, h = size["width"], size["height"]
            scale = min(1.0, 1280 / max(w, h))
            anns = line[attr]["annotations"]
            assert len(meta["objects"]) == len(anns) <= 50
            for ann, obj in zip(anns, meta["objects"], strict=True):
                assert all(isinstance(ann[k], int) for k in ("class_id", "left", "top", "width", "height"))
                assert str(ann["class_id"]) in meta["class-map"]
                classes.add(meta["class-map"][str(ann["class_id"])])
                assert ann["left"] >= 0 and ann["top"] >= 0
                assert ann["left"] + ann["width"] <= w and ann["top"] + ann["height"] <= h
                assert ann["width"] * scale > 1 and ann["height"] * scale > 1
                assert 0 <= obj["confidence"] <= 1
    kinds = {line[a]["type"] for line in lines for a in line if a.endswith("-metadata")}
    if "groundtruth/image-classification" in kinds:
        assert 2 <= len(classes) <= 250


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _records() -> list[Any]:
    accept = Verdict(label="Dog", accepted=True, at=WHEN)
    reject = Verdict(label="bird", accepted=False, at=WHEN)
    return [
        record("s3://raw/a.jpg", label("Bird", 97.5, box(0.1, 0.2, 0.3, 0.4), box(0.9, 0.5, 0.3, 0.6))),
        record("s3://raw/b.jpg", label("Dog", 30, box(0.0, 0.0, 0.5, 0.5)), review=(accept,)),
        record("s3://raw/c.jpg", label("Bird", 99, box(0, 0, 1, 1)), review=(reject,)),
        record("s3://raw/d.jpg", label("Bird", 80, box(0, 0, 0.5, 1)), label("Dog", 90, box(0.5, 0, 0.5, 1))),
        record("s3://raw/e.jpg", label("Cat", 99, box(0, 0, 1, 1))),
    ]


def test_boxes_are_integer_pixels_and_pass_the_custom_labels_rules(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", _records())
    out = tmp_path / "gt" / "output.manifest"
    summary = export_groundtruth(manifest, str(out), Selection(("Bird", "Dog")), task="boxes")
    lines = _read(out)
    assert_custom_labels_valid(lines)
    assert summary.violations == {} and summary.lines_written == 3
    by_source = {line["source-ref"]: line for line in lines}
    a = by_source["s3://raw/a.jpg"]
    assert a["bounding-box"]["image_size"] == [{"width": 200, "height": 100, "depth": 3}]
    assert a["bounding-box"]["annotations"] == [
        {"class_id": 0, "left": 20, "top": 20, "width": 60, "height": 40},
        {"class_id": 0, "left": 180, "top": 50, "width": 20, "height": 50},  # clipped at the edge
    ]
    meta = a["bounding-box-metadata"]
    assert meta["class-map"] == {"0": "Bird", "1": "Dog"}
    assert meta["objects"] == [{"confidence": 0.95}, {"confidence": 0.95}]
    assert meta["human-annotated"] == "no" and meta["job-name"] == "labeling-job/bounding-box"
    b = by_source["s3://raw/b.jpg"]["bounding-box-metadata"]
    assert b["human-annotated"] == "yes" and b["creation-date"] == "2026-11-29T10:00:00.000000"
    assert "s3://raw/c.jpg" not in by_source  # a reject beats 99 %
    d = by_source["s3://raw/d.jpg"]["bounding-box"]["annotations"]
    assert [x["class_id"] for x in d] == [0, 1]


def test_per_label_classification(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", _records())
    out = tmp_path / "per-label.manifest"
    summary = export_groundtruth(manifest, str(out), Selection(("Bird", "Dog")), task="per-label")
    lines = _read(out)
    assert_custom_labels_valid(lines)
    assert summary.violations == {}
    d = next(x for x in lines if x["source-ref"] == "s3://raw/d.jpg")
    assert d["label0"] == 0 and d["label1"] == 1
    assert d["label0-metadata"]["class-name"] == "Bird" and d["label0-metadata"]["confidence"] == 0.8
    assert d["label1-metadata"]["type"] == "groundtruth/image-classification"
    b = next(x for x in lines if x["source-ref"] == "s3://raw/b.jpg")
    assert b["label1-metadata"]["human-annotated"] == "yes" and b["label1-metadata"]["confidence"] == 1.0


def test_single_label_keeps_the_most_confident_and_warns(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", _records())
    out = tmp_path / "cls.manifest"
    summary = export_groundtruth(manifest, str(out), Selection(("Bird", "Dog")), task="classification")
    lines = _read(out)
    assert_custom_labels_valid(lines)
    d = next(x for x in lines if x["source-ref"] == "s3://raw/d.jpg")
    assert d["class"] == 1 and d["class-metadata"]["class-name"] == "Dog"
    assert [w.code for w in summary.warnings] == ["several_labels"]


def test_multilabel_shape(tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", _records())
    out = tmp_path / "ml.manifest"
    export_groundtruth(manifest, str(out), Selection(("Bird", "Dog")), task="multilabel", attribute="tags")
    d = next(x for x in _read(out) if x["source-ref"] == "s3://raw/d.jpg")
    assert d["tags"] == [0, 1]
    meta = d["tags-metadata"]
    assert meta["class-map"] == {"0": "Bird", "1": "Dog"} and meta["confidence-map"] == {"0": 0.8, "1": 0.9}
    assert meta["type"] == "groundtruth/image-classification-multilabel"


def test_violations_are_reported_with_line_numbers(tmp_path: Path) -> None:
    many = tuple(box(i / 60, 0.0, 1 / 60, 0.5) for i in range(60))
    records = [
        record("/local/a.jpg", label("Bird", 90, box(0, 0, 0.5, 0.5))),  # not s3: skipped, not written
        record("s3://raw/big.jpg", label("Bird", 90, box(0.1, 0.1, 0.0002, 0.5)), width=8000, height=6000),
        record("s3://raw/many.jpg", label("Bird", 90, *many), width=6000, height=100),
    ]
    manifest = write_manifest(tmp_path / "m.jsonl", records)
    summary = export_groundtruth(manifest, str(tmp_path / "o.manifest"), Selection(("Bird",)), task="boxes")
    found = {(v.line, v.rule) for v in summary.violation_lines}
    assert summary.skipped == {"not_s3": 1}
    assert (1, "box-too-small") in found  # 1.6 px -> 0.26 px once scaled to 1280
    assert (2, "boxes-per-image") in found
    assert (0, "invalid-lines") in found  # 2 of 2 lines
    assert summary.invalid_lines == 2
    with pytest.raises(ValueError, match="-metadata"):
        export_groundtruth(manifest, str(tmp_path / "x"), Selection(("Bird",)), attribute="x-metadata")
    with pytest.raises(ValueError, match="-ref"):
        export_groundtruth(manifest, str(tmp_path / "x"), Selection(("Bird",)), attribute="bird-ref")


GOOD_CLS = {
    "source-ref": "s3://b/img.jpg",
    "animal": 0,
    "animal-metadata": {
        "class-name": "bird",
        "confidence": 0.97,
        "type": "groundtruth/image-classification",
        "job-name": "labeling-job/animal",
        "human-annotated": "no",
        "creation-date": "2026-11-29T10:00:00.000000",
    },
}
GOOD_BOX = {
    "source-ref": "s3://b/img.png",
    "bounding-box": {
        "image_size": [{"width": 500, "height": 400, "depth": 3}],
        "annotations": [{"class_id": 0, "left": 111, "top": 134, "width": 61, "height": 128}],
    },
    "bounding-box-metadata": {
        "objects": [{"confidence": 0.8}],
        "class-map": {"0": "dog"},
        "type": "groundtruth/object-detection",
        "human-annotated": "no",
        "creation-date": "2026-11-29T10:00:00.000000",
        "job-name": "labeling-job/bounding-box",
    },
}


def _bad(base: dict[str, Any], path: list[str | int], value: Any) -> dict[str, Any]:
    line: dict[str, Any] = json.loads(json.dumps(base))
    target: Any = line
    for step in path[:-1]:
        target = target[step]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return line


@pytest.mark.parametrize(
    ("line", "rule"),
    [
        (_bad(GOOD_CLS, ["source-ref"], "https://b/img.jpg"), "source-ref"),
        (_bad(GOOD_CLS, ["source-ref"], KeyError), "source-ref"),
        (_bad(GOOD_CLS, ["animal-metadata", "confidence"], 97), "classification-metadata"),
        (_bad(GOOD_CLS, ["animal-metadata", "class-name"], KeyError), "classification-metadata"),
        (_bad(GOOD_CLS, ["animal-metadata", "human-annotated"], "maybe"), "classification-metadata"),
        (_bad(GOOD_CLS, ["animal-metadata", "creation-date"], "yesterday"), "classification-metadata"),
        (
            _bad(GOOD_CLS, ["animal-metadata", "type"], "groundtruth/image-classification-multilabel"),
            "line-type",
        ),
        (_bad(GOOD_CLS, ["animal-metadata"], KeyError), "metadata"),
        ({**GOOD_CLS, "x-ref": 0, "x-ref-metadata": GOOD_CLS["animal-metadata"]}, "attribute-name"),
        (_bad(GOOD_BOX, ["bounding-box", "image_size"], {"width": 500, "height": 400}), "detection-format"),
        (_bad(GOOD_BOX, ["bounding-box-metadata", "class-map"], {"1": "dog"}), "detection-format"),
        (_bad(GOOD_BOX, ["bounding-box-metadata", "objects"], []), "detection-format"),
        (_bad(GOOD_BOX, ["bounding-box", "annotations", 0, "left"], -1), "box-inside-image"),
        (_bad(GOOD_BOX, ["bounding-box", "annotations", 0, "left"], 450), "box-inside-image"),
        (_bad(GOOD_BOX, ["bounding-box", "annotations", 0, "width"], 1), "box-too-small"),
        (_bad(GOOD_BOX, ["bounding-box", "annotations", 0, "left"], 1.5), "detection-format"),
    ],
)
def test_checker_catches_known_bad_lines(line: dict[str, Any], rule: str) -> None:
    assert CustomLabelsChecker().check(1, GOOD_CLS, 100) == []
    assert CustomLabelsChecker().check(1, GOOD_BOX, 100) == []
    assert rule in {v.rule for v in CustomLabelsChecker().check(7, line, 100)}


def test_checker_whole_file_rules() -> None:
    one_class = [json.dumps(GOOD_CLS)] * 3
    rules = {v.rule for v in validate_lines(iter(one_class))}
    assert rules == {"label-count"}  # classification needs at least two labels
    checker = CustomLabelsChecker(lines=250_000)
    checker.check(250_001, GOOD_BOX, 2_000_000_000)
    assert {v.rule for v in checker.finish()} == {"manifest-lines", "manifest-size"}
    bad = validate_lines(iter(["{not json", json.dumps(GOOD_BOX)]))
    assert [(v.line, v.rule) for v in bad] == [(1, "json"), (0, "invalid-lines")]
