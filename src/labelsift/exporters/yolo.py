"""Ultralytics YOLO detection: `images/<split>/`, `labels/<split>/` (same stem), `data.yaml`.

Each label file has one line per box, `class_id x_centre y_centre width height`, normalised 0-1,
class ids from 0 in selection order; `data.yaml` names the same classes in the same order.
Pixels (before normalising) are in the DISPLAYED frame (after EXIF orientation); images are
copied unchanged, and Ultralytics applies the EXIF tag when it loads them, so the two agree.
`copy_images=False` writes the labels and `data.yaml` only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import partial

from labelsift.geometry import yolo_box
from labelsift.select import Selection
from labelsift.views import RecordView

from .common import (
    AnnotationFile,
    StorageLike,
    check_fraction,
    class_names,
    count_detection,
    decisions,
    detection_images,
    require_manifest,
)
from .owned import OwnedOutput, copy_image
from .pipeline import PER_CORE, Parallel, staged
from .summary import DEFAULT_DETAIL_LIMIT, ExportSummary


def data_yaml(path: str, classes: list[str]) -> str:
    """The dataset file; strings are JSON-quoted, which YAML reads as double-quoted scalars."""
    lines = [f"path: {json.dumps(path)}", "train: images/train", "val: images/val", "names:"]
    lines += [f"  {i}: {json.dumps(name, ensure_ascii=False)}" for i, name in enumerate(classes)]
    return "\n".join(lines) + "\n"


def _label_file(split: str, stem: str) -> str:
    return f"labels/{split}/{stem}.txt"


def yolo_files(
    records: Iterator[RecordView | None],
    summary: ExportSummary,
    *,
    selection: Selection,
    val_fraction: float,
) -> Iterator[AnnotationFile]:
    """The export's stage (see `pipeline`): records -> label files."""
    for image in detection_images(decisions(records, selection, summary), summary, val_fraction=val_fraction):
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
    overwrite: bool = False,
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
    parallel: Parallel = PER_CORE,
) -> ExportSummary:
    classes = class_names(selection, names)
    check_fraction(val_fraction)  # before anything is made at the destination
    summary = ExportSummary.start("yolo", manifest_uri, dest, classes, detail_limit=detail_limit)
    require_manifest(manifest_uri)
    stage = partial(yolo_files, selection=selection, val_fraction=val_fraction)
    with OwnedOutput(dest, storage, fmt="yolo", manifest=manifest_uri, overwrite=overwrite) as out:
        for image in staged(manifest_uri, selection, summary, stage, parallel):
            if copy_images:
                rel = f"images/{image.split}/{image.name}"
                if not copy_image(out, image.source, image.etag, image.size, rel, summary):
                    continue
            out.write_bytes(_label_file(image.split, image.stem), image.text.encode("utf-8"))
            summary.files_written += 1
            if not copy_images:
                out.note_source(image.source)
            count_detection(summary, image.tally)
        out.write_bytes("data.yaml", data_yaml(out.root, classes).encode("utf-8"))
        summary.files_written += 1
        out.commit(summary)
    return summary
