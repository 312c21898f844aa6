"""Ultralytics YOLO detection: `images/<split>/`, `labels/<split>/` (same stem), `data.yaml`.

Each label file has one line per box, `class_id x_centre y_centre width height`, normalised 0-1,
class ids from 0 in selection order; `data.yaml` names the same classes in the same order.
`data.yaml` has no `path:`: Ultralytics then reads the dataset from the yaml's own folder, from
any working directory. When no image falls in the val split, `val:` names the train images
(Ultralytics needs both sets to exist), and the other way round; the summary warns.
Pixels (before normalising) are in the DISPLAYED frame (after EXIF orientation); copies are
upright (see `owned.copy_image`), so every loader sees boxes and pixels in one frame.
`copy_images=False` writes the labels, `data.yaml` and `sources.jsonl`, which maps each label
file to the source image it describes (one JSON object a line: label, image, source).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from labelsift.geometry import yolo_box
from labelsift.select import Selection

from .common import StorageLike
from .detection_export import (
    DetectionFormat,
    DetectionOptions,
    DetectionWriter,
    ExportItem,
    export_detections,
    export_item,
)
from .detections import DetectionImage
from .naming import TRAIN, VAL
from .owned import OwnedOutput, TextSink
from .pipeline import PER_CORE, Parallel
from .summary import DEFAULT_DETAIL_LIMIT, ExportSummary


def export_yolo(
    manifest_uri: str,
    dest: str,
    selection: Selection,
    *,
    storage: StorageLike | None = None,
    names: Mapping[str, str] | None = None,
    val_fraction: float = 0.2,
    copy_images: bool = True,
    upright: bool = True,
    keep_partial: bool = False,
    overwrite: bool = False,
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
    parallel: Parallel = PER_CORE,
) -> ExportSummary:
    """Write an Ultralytics YOLO dataset of `selection` from the manifest at `manifest_uri` to `dest`.

    Args:
        manifest_uri: the manifest to read (a file, or a folder or `s3://` prefix of shards).
        dest: the destination folder, local or `s3://bucket/prefix`.
        selection: the labels to export and how records are selected.
        storage, names, val_fraction, upright, keep_partial, overwrite, detail_limit, parallel:
            the fields of `DetectionOptions`, documented there (shared by every detection export).
        copy_images: copy each image beside its labels; False writes `sources.jsonl` instead.

    Returns:
        The counts and reasons of what was written or left out.

    Raises:
        UsageError: a bad `names` mapping or `val_fraction` (before anything is written).
        FileNotFoundError: no manifest at `manifest_uri`.
        CannotProceed: the destination cannot be written, or holds files labelsift did not write
            (`NameClash`), or an earlier export without `overwrite`.
    """
    options = DetectionOptions(
        storage=storage,
        names=names,
        val_fraction=val_fraction,
        copy_images=copy_images,
        upright=upright,
        keep_partial=keep_partial,
        overwrite=overwrite,
        detail_limit=detail_limit,
        parallel=parallel,
    )
    return export_detections(YOLO, manifest_uri, dest, selection, options)


def yolo_item(image: DetectionImage, classes: list[str], copy_images: bool) -> ExportItem:
    """The image's label file: one line per box, `class_id x_centre y_centre width height`."""
    lines = []
    for obj in image.objects:
        xc, yc, w, h = yolo_box(obj.box, image.width, image.height)
        lines.append(f"{obj.class_id} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}\n")
    stem, suffix = image.file_name()
    return export_item(image, stem, stem + suffix, "".join(lines))


class YoloWriter(DetectionWriter):
    """Label files as the items come (and `sources.jsonl` without copies); `data.yaml` at the end."""

    def __init__(self, out: OwnedOutput, summary: ExportSummary, options: DetectionOptions) -> None:
        super().__init__(out, summary, options)
        self.splits: set[str] = set()  # the splits that got an image
        self.sources: TextSink | None = None
        if not options.copy_images:
            self.sources = self.streams.enter_context(out.open_text("sources.jsonl"))

    def add(self, item: ExportItem) -> None:
        label_file = f"labels/{item.split}/{item.stem}.txt"
        self.out.write_bytes(label_file, item.text.encode("utf-8"))
        self.summary.files_written += 1
        self.splits.add(item.split)
        if self.sources is not None:
            line = {"label": label_file, "image": self.image_path(item), "source": item.source}
            self.sources.write(json.dumps(line) + "\n")

    def finish(self) -> None:
        super().finish()
        self.summary.files_written += self.sources is not None
        train, val = _split_folders(self.summary, self.splits)
        self.out.write_bytes(
            "data.yaml", data_yaml(self.summary.classes, train=train, val=val).encode("utf-8")
        )
        self.summary.files_written += 1


YOLO = DetectionFormat("yolo", yolo_item, YoloWriter)


def data_yaml(classes: list[str], *, train: str = "images/train", val: str = "images/val") -> str:
    """The dataset file; strings are JSON-quoted, which YAML reads as double-quoted scalars."""
    lines = [f"train: {train}", f"val: {val}", "names:"]
    lines += [f"  {i}: {json.dumps(name, ensure_ascii=False)}" for i, name in enumerate(classes)]
    return "\n".join(lines) + "\n"


def _split_folders(summary: ExportSummary, splits: set[str]) -> tuple[str, str]:
    """data.yaml's train and val folders: a split with no image names the other's (and warns)."""
    train, val = "images/train", "images/val"
    if VAL not in splits:
        val = train
        summary.warn(
            summary.destination,
            "no_val_images",
            "no image fell in the val split; data.yaml's val names the train images",
        )
    elif TRAIN not in splits:
        train = val
        summary.warn(
            summary.destination,
            "no_train_images",
            "no image fell in the train split; data.yaml's train names the val images (lower --val)",
        )
    return train, val
