"""Every export loads where people train: Ultralytics, Datumaro and Hugging Face `datasets`, each
running its own code in its own environment (`tests/consumer_envs.py`), from another directory.

One corpus of real images whose boxes are known as ratios of the displayed image; one of them is
stored sideways with EXIF orientation 6, one is selected for a label none of whose boxes passes
(held out of detection exports), one has two selected labels (held out of single-label
classification). The expected pixels are worked out here from the ratios and the displayed size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from consumer_envs import load
from manifest_builders import box, label, make_jpeg, record, write_manifest

from labelsift.exporters.coco import export_coco
from labelsift.exporters.huggingface import export_hf
from labelsift.exporters.naming import split_for
from labelsift.exporters.voc import export_voc
from labelsift.exporters.yolo import export_yolo
from labelsift.select import Selection
from labelsift.storage import Storage

CLASSES = ["Dog", "Bird"]  # deliberately not alphabetical: class ids must follow --label order
VAL = 0.5
# name: (stored width, height, EXIF orientation, labels); boxes as (left, top, width, height) ratios
CORPUS: dict[str, tuple[int, int, int | None, list[Any]]] = {
    "a": (200, 100, None, [("Bird", 97, [(0.1, 0.2, 0.3, 0.4), (0.6, 0.1, 0.2, 0.5)])]),
    "b": (160, 120, None, [("Dog", 90, [(0.0, 0.0, 0.5, 0.5)])]),
    "c": (200, 100, 6, [("Bird", 88, [(0.5, 0.25, 0.4, 0.5)])]),  # displayed 100 x 200
    "d": (120, 90, None, [("Dog", 85, [(0.2, 0.2, 0.3, 0.3)]), ("Bird", 80, [(0.5, 0.5, 0.2, 0.2)])]),
    "e": (150, 150, None, [("Bird", 75, []), ("Dog", 70, [(0.1, 0.1, 0.3, 0.3)])]),  # Bird has no box
    "f": (180, 120, None, [("Dog", 95, [(0.25, 0.25, 0.5, 0.5)])]),
}
PARTIAL = {"e"}  # a selected label without a box: held out of detection exports
SEVERAL = {"d", "e"}  # two selected labels: held out of single-label classification


def displayed(name: str) -> tuple[int, int]:
    width, height, orientation, _ = CORPUS[name]
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def pixel_boxes(name: str) -> list[tuple[str, list[float]]]:
    """(class, [x, y, w, h]) in pixels of the displayed image, sorted."""
    width, height = displayed(name)
    found = []
    for class_name, _, boxes in CORPUS[name][3]:
        for left, top, w, h in boxes:
            found.append((class_name, [left * width, top * height, w * width, h * height]))
    return sorted(found)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    root = tmp_path_factory.mktemp("consumer-corpus")
    sources, records = {}, []
    for name, (width, height, orientation, labels) in CORPUS.items():
        path = make_jpeg(root / "src" / f"{name}.jpg", width, height, orientation)
        sources[name] = str(path)
        shown_width, shown_height = displayed(name)
        records.append(
            record(
                str(path),
                *(label(n, c, *(box(*b, confidence=c) for b in bs)) for n, c, bs in labels),
                width=shown_width,
                height=shown_height,
                orientation=orientation,
                size=path.stat().st_size,
            )
        )
    return write_manifest(root / "m.jsonl", records), sources


def by_source(sources: dict[str, str]) -> dict[str, str]:
    return {Path(path).stem: name for name, path in sources.items()}


def name_of(file_name: str) -> str:
    """Corpus name of an exported file (`<...>_src_a-<hash>.jpg` -> `a`)."""
    return Path(file_name).stem.rsplit("-", 1)[0].rsplit("_", 1)[-1]


def split_of(sources: dict[str, str], name: str) -> str:
    return split_for(sources[name], VAL)


def close(got: list[float], want: list[float], tolerance: float) -> bool:
    return all(abs(g - w) <= tolerance for g, w in zip(got, want, strict=True))


def test_ultralytics_loads_the_yolo_export_from_another_directory(
    corpus: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    manifest, sources = corpus
    out = tmp_path / "yolo"
    export_yolo(manifest, str(out), Selection(tuple(CLASSES)), storage=Storage(), val_fraction=VAL)
    seen = load("ultralytics", "ultralytics_load.py", str(out / "data.yaml"))
    assert seen["names"] == {str(i): n for i, n in enumerate(CLASSES)} and seen["nc"] == 2  # JSON keys
    images = {split: {name_of(f): v for f, v in files.items()} for split, files in seen["splits"].items()}
    expected = set(CORPUS) - PARTIAL
    assert set(images["train"]) | set(images["val"]) == expected
    for name in expected:
        split = "val" if split_of(sources, name) == "val" else "train"
        got = images[split][name]
        width, height = displayed(name)
        assert got["shape"] == [height, width]  # the copy is upright: Ultralytics sees the displayed frame
        want = sorted(
            (CLASSES.index(c), [(x + w / 2) / width, (y + h / 2) / height, w / width, h / height])
            for c, (x, y, w, h) in pixel_boxes(name)
        )
        pairs = sorted(zip(got["cls"], got["xywhn"], strict=True))
        assert [c for c, _ in pairs] == [c for c, _ in want]
        assert all(close(g, w, 1e-4) for (_, g), (_, w) in zip(pairs, want, strict=True)), (name, pairs, want)


@pytest.mark.parametrize("fmt", ["coco_instances", "voc", "yolo"])
def test_datumaro_imports_every_detection_export_without_a_warning(
    corpus: tuple[str, dict[str, str]], tmp_path: Path, fmt: str
) -> None:
    manifest, sources = corpus
    out = tmp_path / fmt
    exporter = {"coco_instances": export_coco, "voc": export_voc, "yolo": export_yolo}[fmt]
    exporter(manifest, str(out), Selection(tuple(CLASSES)), storage=Storage(), val_fraction=VAL)
    seen = load("datumaro", "datumaro_load.py", str(out), fmt)
    assert seen["warnings"] == []
    labels = [name for name in seen["labels"] if name != "background"]  # VOC's own class 0
    assert labels == CLASSES
    items = {name_of(item_id): item for item_id, item in seen["items"].items()}
    assert set(items) == set(CORPUS) - PARTIAL
    tolerance = 1.01 if fmt == "voc" else 0.01  # VOC stores whole 1-based pixel corners
    for name, item in items.items():
        width, height = displayed(name)
        assert item["shape"] == [height, width], name  # Datumaro ignores EXIF: the copy must be upright
        assert item["others"] == []  # boxes only: no polygon doubling an annotation
        want = pixel_boxes(name)
        assert [c for c, _ in item["boxes"]] == [c for c, _ in want]
        assert all(close(g, w, tolerance) for (_, g), (_, w) in zip(item["boxes"], want, strict=True)), name
        expected_subset = "val" if split_of(sources, name) == "val" else "train"
        assert item["subset"] == expected_subset


@pytest.mark.parametrize("task", ["classification", "multilabel", "detection"])
def test_datasets_loads_every_hf_task_with_no_extra_argument(
    corpus: tuple[str, dict[str, str]], tmp_path: Path, task: str
) -> None:
    manifest, sources = corpus
    out = tmp_path / task
    summary = export_hf(
        manifest, str(out), Selection(tuple(CLASSES)), task=task, storage=Storage(), val_fraction=VAL
    )  # type: ignore[arg-type]
    seen = load("hf", "hf_load.py", str(out))
    assert seen["names"] == CLASSES
    names = by_source(sources)
    rows = {
        names[Path(row["source"]).stem]: (split, row)
        for split, table in seen["splits"].items()
        for row in table
    }
    held = {"classification": SEVERAL, "multilabel": set(), "detection": PARTIAL}[task]
    assert set(rows) == set(CORPUS) - held
    if task == "classification":
        assert summary.skipped == {"several_labels": len(SEVERAL)}
    for name, (split, row) in rows.items():
        assert split == ("validation" if split_of(sources, name) == "val" else "train")
        assert row["image_size"] == list(displayed(name))  # upright pixels
        selected = sorted({CLASSES.index(c) for c, _, _ in CORPUS[name][3]})
        if task == "classification":
            assert [row["label"]] == selected
        elif task == "multilabel":
            assert sorted(row["labels"]) == selected
        else:
            got = sorted(zip(row["objects"]["category"], row["objects"]["bbox"], strict=True))
            want = sorted((CLASSES.index(c), b) for c, b in pixel_boxes(name))
            assert [c for c, _ in got] == [c for c, _ in want]
            assert all(close(g, w, 0.01) for (_, g), (_, w) in zip(got, want, strict=True)), name
            assert (row["width"], row["height"]) == displayed(name)
