"""YOLO and VOC exports, read back by supervision's loaders (which need the images on disk)."""

from __future__ import annotations

import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from manifest_builders import box, label, make_jpeg, record, write_manifest

from labelsift.exporters.naming import file_name_parts
from labelsift.exporters.voc import export_voc
from labelsift.exporters.yolo import export_yolo
from labelsift.select import Selection
from labelsift.storage import Storage, StorageError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import supervision as sv


def _manifest(tmp_path: Path) -> tuple[str, dict[str, str]]:
    src = tmp_path / "src"
    a = str(make_jpeg(src / "cats" / "img.jpg", 200, 100))
    b = str(make_jpeg(src / "dogs" / "img.jpg", 200, 100))  # same basename as a
    c = str(make_jpeg(src / "phone.jpg", 200, 100, orientation=6))  # displayed 100x200
    records = [
        record(a, label("Bird", 97, box(0.1, 0.2, 0.3, 0.4), box(0.9, 0.5, 0.3, 0.6)), label("Dog", 20)),
        record(b, label("Dog", 90, box(0.0, 0.0, 0.5, 0.5)), label("Bird", 88, box(0.5, 0.5, 0.001, 0.3))),
        record(c, label("Bird", 88, box(0.5, 0.25, 0.5, 0.5)), width=100, height=200, orientation=6),
    ]
    return write_manifest(tmp_path / "m.jsonl", records), {"a": a, "b": b, "c": c}


# Expected xyxy pixel boxes (displayed frame), by source and class name.
EXPECTED = {
    "a": [("Bird", [20, 20, 80, 60]), ("Bird", [180, 50, 200, 100])],  # second clipped at the edge
    "b": [("Dog", [0, 0, 100, 50])],  # Bird's 0.2 px box is dropped
    "c": [("Bird", [50, 50, 100, 150])],
}


def _boxes(ds: Any, classes: list[str]) -> dict[str, list[tuple[str, list[float]]]]:
    out = {}
    for path, _image, detections in ds:
        stem = Path(path).stem
        out[stem] = sorted(
            (classes[int(c)], [round(float(v), 3) for v in xyxy])
            for xyxy, c in zip(detections.xyxy, detections.class_id, strict=True)
        )
    return out


def safe_stem(source: str) -> str:
    """The stem of the file an image of `source` is exported as."""
    return file_name_parts(source, None)[0]


def _stems(src: dict[str, str]) -> dict[str, str]:
    return {k: safe_stem(v) for k, v in src.items()}


def test_yolo_reads_back_with_supervision(tmp_path: Path) -> None:
    manifest, src = _manifest(tmp_path)
    out = tmp_path / "yolo"
    summary = export_yolo(
        manifest, str(out), Selection(("Bird", "Dog")), storage=Storage(), val_fraction=0.0, keep_partial=True
    )
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data == {  # no path: Ultralytics reads the yaml's own folder; no val image: val names train
        "train": "images/train",
        "val": "images/train",
        "names": {0: "Bird", 1: "Dog"},
    }
    ds = sv.DetectionDataset.from_yolo(
        images_directory_path=str(out / "images" / "train"),
        annotations_directory_path=str(out / "labels" / "train"),
        data_yaml_path=str(out / "data.yaml"),
    )
    assert ds.classes == ["Bird", "Dog"]
    stems = _stems(src)
    got = _boxes(ds, ds.classes)
    assert set(got) == set(stems.values())
    for key, stem in stems.items():
        assert len(got[stem]) == len(EXPECTED[key])
        for (name, xyxy), (want_name, want) in zip(got[stem], EXPECTED[key], strict=True):
            assert name == want_name
            np.testing.assert_allclose(xyxy, want, atol=0.01)
    assert summary.dropped_boxes == {"degenerate": 1}
    assert summary.per_label["Bird"].images == {"train": 2} and summary.per_label["Dog"].images == {
        "train": 1
    }
    line = (out / "labels" / "train" / f"{stems['a']}.txt").read_text().splitlines()[0]
    assert line == "0 0.250000 0.400000 0.300000 0.400000"


def test_yolo_with_every_image_in_val_names_val_as_train(tmp_path: Path) -> None:
    manifest, _ = _manifest(tmp_path)
    out = tmp_path / "yolo"
    summary = export_yolo(
        manifest, str(out), Selection(("Bird", "Dog")), storage=Storage(), val_fraction=1.0, keep_partial=True
    )
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert (data["train"], data["val"]) == ("images/val", "images/val")  # Ultralytics needs both to exist
    assert not (out / "images" / "train").exists() and len(list((out / "images" / "val").iterdir())) == 3
    assert "no_train_images" in [w.code for w in summary.warnings]


def test_yolo_splits_are_stable_and_labels_only_mode(tmp_path: Path) -> None:
    manifest, _ = _manifest(tmp_path)
    first = export_yolo(
        manifest, str(tmp_path / "one"), Selection(("Bird", "Dog")), val_fraction=0.5, copy_images=False,
        keep_partial=True,
    )  # fmt: skip
    assert not (tmp_path / "one" / "images").exists()
    files = {p.name: p.parent.name for p in (tmp_path / "one" / "labels").rglob("*.txt")}
    assert len(files) == 3 and sum(first.images.values()) == 3
    second = export_yolo(
        manifest, str(tmp_path / "two"), Selection(("Bird", "Dog")), val_fraction=0.5, copy_images=False,
        keep_partial=True,
    )  # fmt: skip
    assert {p.name: p.parent.name for p in (tmp_path / "two" / "labels").rglob("*.txt")} == files
    assert second.images == first.images


def test_voc_reads_back_with_supervision(tmp_path: Path) -> None:
    manifest, src = _manifest(tmp_path)
    out = tmp_path / "voc"
    summary = export_voc(
        manifest, str(out), Selection(("Bird", "Dog")), storage=Storage(), val_fraction=0.0, keep_partial=True
    )
    ds = sv.DetectionDataset.from_pascal_voc(
        images_directory_path=str(out / "JPEGImages"), annotations_directory_path=str(out / "Annotations")
    )
    assert set(ds.classes) == {"Bird", "Dog"}
    stems = _stems(src)
    got = _boxes(ds, ds.classes)
    assert got == {stems[k]: [(n, [float(v) for v in b]) for n, b in EXPECTED[k]] for k in EXPECTED}
    xml = (out / "Annotations" / f"{stems['a']}.xml").read_text()
    assert "<xmin>21</xmin><ymin>21</ymin><xmax>80</xmax><ymax>60</ymax>" in xml  # 1-based inclusive
    assert xml.count("<truncated>1</truncated>") == 1  # the clipped box
    rotated = (out / "Annotations" / f"{stems['c']}.xml").read_text()
    assert "<width>100</width><height>200</height><depth>3</depth>" in rotated  # displayed frame
    assert (out / "labels.txt").read_text().splitlines() == ["Bird", "Dog"]
    assert sorted((out / "ImageSets" / "Main" / "train.txt").read_text().split()) == sorted(stems.values())
    assert (out / "ImageSets" / "Main" / "val.txt").read_text() == ""
    assert summary.copied == 3 and summary.files_written == 3 + 4


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_missing_source_image_is_skipped_not_fatal(tmp_path: Path, fmt: str) -> None:
    manifest, src = _manifest(tmp_path)
    Path(src["b"]).unlink()
    export = export_yolo if fmt == "yolo" else export_voc
    summary = export(
        manifest, str(tmp_path / fmt), Selection(("Bird", "Dog")), storage=Storage(), val_fraction=0,
        keep_partial=True,
    )  # fmt: skip
    assert sum(summary.skipped.values()) == 1 and summary.skipped_images[0].source == src["b"]
    assert sum(summary.images.values()) == 2


@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_a_rerun_replaces_an_earlier_export_only_when_told(tmp_path: Path, fmt: str) -> None:
    manifest, src = _manifest(tmp_path)
    stems = _stems(src)
    out = tmp_path / fmt
    export = export_yolo if fmt == "yolo" else export_voc
    export = partial(export, keep_partial=True)
    first = export(manifest, str(out), Selection(("Bird", "Dog")), storage=Storage(), val_fraction=0)
    assert sum(first.images.values()) == 3
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    with pytest.raises(StorageError, match="already holds") as refused:
        export(
            manifest, str(out), Selection(("Bird", "Dog"), threshold=95), storage=Storage(), val_fraction=0
        )
    assert "--overwrite" in str(refused.value) and refused.value.fatal
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing touched

    # Only a's Bird (97) reaches 95: the rerun must leave no label, image or list entry of b or c.
    again = export(
        manifest, str(out), Selection(("Bird", "Dog"), threshold=95), storage=Storage(), val_fraction=0,
        overwrite=True,
    )  # fmt: skip
    # the records carry no etag, so the earlier copy of a cannot be proven current: copied again
    assert sum(again.images.values()) == 1 and again.already_there == 0 and again.copied == 1
    if fmt == "yolo":
        ds = sv.DetectionDataset.from_yolo(
            images_directory_path=str(out / "images" / "train"),
            annotations_directory_path=str(out / "labels" / "train"),
            data_yaml_path=str(out / "data.yaml"),
        )
    else:
        ds = sv.DetectionDataset.from_pascal_voc(
            images_directory_path=str(out / "JPEGImages"),
            annotations_directory_path=str(out / "Annotations"),
        )
        assert (out / "ImageSets" / "Main" / "train.txt").read_text().split() == [stems["a"]]
    assert sorted(Path(path).stem for path, _, _ in ds) == [stems["a"]]
    assert _boxes(ds, ["Bird", "Dog"])[stems["a"]] == sorted(EXPECTED["a"])
    # the earlier export's files this one does not write: b's and c's labels (or XML) and images
    assert again.replaced == 4
