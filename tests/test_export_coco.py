from __future__ import annotations

import json
from pathlib import Path

import pytest
from manifest_builders import box, label, make_jpeg, record, write_manifest
from pycocotools.coco import COCO

from labelsift.exporters.coco import export_coco
from labelsift.geometry import DropReason
from labelsift.models import Verdict
from labelsift.select import Selection
from labelsift.storage import Storage, StorageError


def _manifest(tmp_path: Path) -> tuple[str, dict[str, str]]:
    src = tmp_path / "src"
    a = str(make_jpeg(src / "a" / "img.jpg", 200, 100))
    b = str(make_jpeg(src / "b" / "img.jpg", 200, 100))
    # stored landscape 200x100 with "rotate 90" (6): displayed portrait 100x200
    c = str(make_jpeg(src / "phone.jpg", 200, 100, orientation=6))
    d = str(make_jpeg(src / "dog.jpg", 200, 100))
    records = [
        record(
            a,
            label("Bird", 97, box(0.1, 0.2, 0.3, 0.4), box(0.9, 0.5, 0.3, 0.6), parents=("Animal",)),
            label("Animal", 97, box(0.1, 0.2, 0.3, 0.4)),  # same box reported by the parent: kept once
        ),
        record(b, label("Bird", 90, box(0.0, 0.0, 0.5, 0.5), box(0.5, 0.5, 0.001, 0.3), parents=("Animal",))),
        record(c, label("Bird", 88, box(0.5, 0.25, 0.5, 0.5)), width=100, height=200, orientation=6),
        record(d, label("Dog", 40, box(0.2, 0.2, 0.2, 0.2))),
    ]
    return write_manifest(tmp_path / "m.jsonl", records), {"a": a, "b": b, "c": c, "d": d}


def _by_file(coco: COCO) -> dict[str, list[tuple[str, list[float]]]]:
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    out: dict[str, list[tuple[str, list[float]]]] = {}
    for image in coco.loadImgs(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        out[image["file_name"]] = sorted((names[a["category_id"]], a["bbox"]) for a in anns)
    return out


def test_coco_loads_with_pycocotools_and_boxes_are_exact_pixels(tmp_path: Path) -> None:
    manifest, src = _manifest(tmp_path)
    summary = export_coco(
        manifest, str(tmp_path / "out"), Selection(("Bird", "Dog")), val_fraction=0.0, copy_images=False
    )
    train = COCO(str(tmp_path / "out" / "annotations" / "instances_train.json"))
    assert [(c["id"], c["name"]) for c in train.loadCats(train.getCatIds())] == [(1, "Bird"), (2, "Dog")]
    boxes = _by_file(train)
    assert boxes == {
        # 20,20 60x40; the second clipped at the right and bottom edges: x 180..200, y 50..100
        src["a"]: [("Bird", [20.0, 20.0, 60.0, 40.0]), ("Bird", [180.0, 50.0, 20.0, 50.0])],
        src["b"]: [("Bird", [0.0, 0.0, 100.0, 50.0])],  # the 0.2 px wide box is dropped
        # displayed frame 100x200 (EXIF 6), not the stored 200x100
        src["c"]: [("Bird", [50.0, 50.0, 50.0, 100.0])],
    }
    rotated = next(i for i in train.loadImgs(train.getImgIds()) if i["file_name"] == src["c"])
    assert (rotated["width"], rotated["height"]) == (100, 200)
    assert summary.dropped_boxes == {DropReason.DEGENERATE.value: 1}
    assert summary.per_label["Bird"].images == {"train": 3} and summary.per_label["Bird"].boxes == {
        "train": 4
    }
    assert summary.per_label["Dog"].images == {}
    ann_ids = [a["id"] for a in train.loadAnns(train.getAnnIds())]
    assert len(ann_ids) == len(set(ann_ids)) == 4 and min(a["area"] for a in train.loadAnns(ann_ids)) > 0
    assert json.loads((tmp_path / "out" / "annotations" / "instances_val.json").read_text())["images"] == []


def test_parents_match_and_one_class_order_across_splits(tmp_path: Path) -> None:
    manifest, _ = _manifest(tmp_path)
    summary = export_coco(
        manifest, str(tmp_path / "out"), Selection(("Dog", "Animal"), threshold=35), val_fraction=0.5,
        copy_images=False,
    )  # fmt: skip
    files = [tmp_path / "out" / "annotations" / f"instances_{s}.json" for s in ("train", "val")]
    categories = [json.loads(f.read_text())["categories"] for f in files]
    assert (
        categories[0]
        == categories[1]
        == [
            {"id": 1, "name": "Dog", "supercategory": "none"},
            {"id": 2, "name": "Animal", "supercategory": "none"},
        ]
    )
    loaded = [COCO(str(f)) for f in files]
    assert sum(len(c.getImgIds()) for c in loaded) == 3  # a, b (Animal via parents), d (Dog)
    ids = [a["id"] for c in loaded for a in c.loadAnns(c.getAnnIds())]
    assert len(ids) == len(set(ids))  # unique across the whole export
    assert sum(summary.per_label["Animal"].boxes.values()) == 3
    assert sum(summary.per_label["Dog"].images.values()) == 1


def test_human_boxes_replace_the_model_and_copy_images(tmp_path: Path) -> None:
    src = tmp_path / "src"
    a = str(make_jpeg(src / "x" / "same.jpg", 200, 100))
    b = str(make_jpeg(src / "y" / "same.jpg", 200, 100))
    redraw = Verdict(label="bird", accepted=True, instances=[box(0.5, 0.5, 0.25, 0.5)])
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [
            record(a, label("Bird", 20, box(0, 0, 1, 1)), review=(redraw,)),
            record(b, label("Bird", 99, box(0, 0, 1, 1))),
        ],
    )

    out = tmp_path / "out"
    summary = export_coco(
        manifest, str(out), Selection(("Bird",)), storage=Storage(), copy_images=True, val_fraction=0
    )
    coco = COCO(str(out / "annotations" / "instances_train.json"))
    images = coco.loadImgs(coco.getImgIds())
    assert len({i["file_name"] for i in images}) == 2  # same basename, distinct names
    for image in images:
        assert (out / "images" / "train" / image["file_name"]).is_file()
    human = next(i for i in images if "x_same" in i["file_name"])
    assert [a["bbox"] for a in coco.loadAnns(coco.getAnnIds(imgIds=[human["id"]]))] == [
        [100.0, 50.0, 50.0, 50.0]
    ]
    assert summary.per_label["Bird"].human == 1 and summary.copied == 2
    with pytest.raises(StorageError, match="already holds a COCO export"):
        export_coco(manifest, str(out), Selection(("Bird",)), storage=Storage(), copy_images=True)
    again = export_coco(
        manifest, str(out), Selection(("Bird",)), storage=Storage(), copy_images=True, val_fraction=0,
        overwrite=True,
    )  # fmt: skip
    # the records carry no etag, so the earlier copies cannot be proven current: copied again
    assert again.copied == 2 and again.already_there == 0
    assert again.replaced == 0  # every file of the first export is written again
    assert len(COCO(str(out / "annotations" / "instances_train.json")).getImgIds()) == 2


@pytest.mark.parametrize("threshold", [50.0, 95.0])
def test_a_different_threshold_gives_a_different_set_without_rescanning(
    tmp_path: Path, threshold: float
) -> None:
    manifest, src = _manifest(tmp_path)
    selection = Selection(("Bird",), threshold=threshold)
    export_coco(manifest, str(tmp_path / "out"), selection, val_fraction=0, copy_images=False)
    coco = COCO(str(tmp_path / "out" / "annotations" / "instances_train.json"))
    files = {i["file_name"] for i in coco.loadImgs(coco.getImgIds())}
    assert files == ({src["a"], src["b"], src["c"]} if threshold == 50.0 else {src["a"]})
