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
from collections.abc import Iterable, Iterator, Mapping
from contextlib import nullcontext
from functools import partial

from labelsift.geometry import yolo_box
from labelsift.select import Selection
from labelsift.views import RecordView

from .common import (
    TRAIN,
    VAL,
    AnnotationFile,
    StorageLike,
    check_fraction,
    class_names,
    count_detection,
    decisions,
    detection_images,
    require_manifest,
)
from .owned import OwnedOutput, TextSink, copy_image
from .pipeline import PER_CORE, Parallel, staged
from .summary import DEFAULT_DETAIL_LIMIT, ExportSummary


def data_yaml(classes: list[str], *, train: str = "images/train", val: str = "images/val") -> str:
    """The dataset file; strings are JSON-quoted, which YAML reads as double-quoted scalars."""
    lines = [f"train: {train}", f"val: {val}", "names:"]
    lines += [f"  {i}: {json.dumps(name, ensure_ascii=False)}" for i, name in enumerate(classes)]
    return "\n".join(lines) + "\n"


def _write_images(
    out: OwnedOutput,
    images: Iterable[AnnotationFile],
    summary: ExportSummary,
    *,
    copy_images: bool,
    upright: bool,
    sources: TextSink | None,
) -> set[str]:
    """Each image's label file (and copy, or line in `sources`); the splits that got an image."""
    splits: set[str] = set()
    for image in images:
        rel = f"images/{image.split}/{image.name}"
        turn = image.orientation if upright else None
        if copy_images and not copy_image(
            out, image.source, image.etag, image.size, rel, summary, orientation=turn
        ):
            continue
        label_file = _label_file(image.split, image.stem)
        out.write_bytes(label_file, image.text.encode("utf-8"))
        summary.files_written += 1
        splits.add(image.split)
        if sources is not None:
            out.note_source(image.source)
            sources.write(json.dumps({"label": label_file, "image": rel, "source": image.source}) + "\n")
        count_detection(summary, image.tally)
    return splits


def _write_data_yaml(out: OwnedOutput, summary: ExportSummary, classes: list[str], splits: set[str]) -> None:
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
    out.write_bytes("data.yaml", data_yaml(classes, train=train, val=val).encode("utf-8"))
    summary.files_written += 1


def _label_file(split: str, stem: str) -> str:
    return f"labels/{split}/{stem}.txt"


def yolo_files(
    records: Iterator[RecordView | None],
    summary: ExportSummary,
    *,
    selection: Selection,
    val_fraction: float,
    keep_partial: bool = False,
) -> Iterator[AnnotationFile]:
    """The export's stage (see `pipeline`): records -> label files."""
    decided = decisions(records, selection, summary)
    for image in detection_images(decided, summary, val_fraction=val_fraction, keep_partial=keep_partial):
        lines = []
        for obj in image.objects:
            xc, yc, w, h = yolo_box(obj.box, image.width, image.height)
            lines.append(f"{obj.class_id} {xc:.6f} {yc:.6f} {w:.6f} {h:.6f}\n")
        stem, suffix = image.file_name()
        record = image.record
        yield AnnotationFile(
            record["source"],
            record["etag"],
            record["size"],
            image.split,
            stem,
            stem + suffix,
            "".join(lines),
            image.tally,
            record["orientation"],
        )


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

    `names` renames classes (query label -> class name); `val_fraction` is the share of images in
    the val split (by a hash of the source); `copy_images` copies each image beside its labels,
    `upright` writes an EXIF-rotated image in its displayed frame; `keep_partial` exports images
    where a selected label has no usable box (held out by default); `overwrite` replaces an
    earlier export in `dest` (only the files its receipt lists); `parallel` spreads the
    per-record work over processes. Returns the counts and reasons of what was written or left out.
    """
    classes = class_names(selection, names)
    check_fraction(val_fraction)  # before anything is made at the destination
    summary = ExportSummary.start("yolo", manifest_uri, dest, classes, detail_limit=detail_limit)
    require_manifest(manifest_uri)
    stage = partial(yolo_files, selection=selection, val_fraction=val_fraction, keep_partial=keep_partial)
    with OwnedOutput(dest, storage, fmt="yolo", manifest=manifest_uri, overwrite=overwrite) as out:
        images = staged(manifest_uri, selection, summary, stage, parallel)
        with out.open_text("sources.jsonl") if not copy_images else nullcontext() as sources:
            splits = _write_images(
                out, images, summary, copy_images=copy_images, upright=upright, sources=sources
            )
        summary.files_written += not copy_images
        _write_data_yaml(out, summary, classes, splits)
        out.commit(summary)
    return summary
