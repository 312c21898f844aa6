"""COCO detection: `annotations/instances_<split>.json` per split, written by streaming.

Pixels are in the DISPLAYED frame (after EXIF orientation), from the record's width/height: a
loader must apply the EXIF tag to the image it reads (PIL `ImageOps.exif_transpose`, OpenCV's
`imread` does by default). With `copy_images=False`, `file_name` is the source URI; with True the
images are copied unchanged to `images/<split>/<unique name>` and `file_name` is that name.

Nothing is held in memory but one record: image and annotation entries are appended to temporary
files while the manifest streams, then stitched into each JSON file. Image ids count from 1 per
split, annotation ids from 1 across the whole export, category ids from 1 in selection order.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO

from labelsift.geometry import coco_bbox
from labelsift.select import Selection

from .common import (
    TRAIN,
    VAL,
    Closing,
    OutputDir,
    StorageLike,
    claim_destination,
    class_names,
    copy_image,
    count_detection,
    detection_images,
)
from .common import dump_json as dumps
from .summary import DEFAULT_DETAIL_LIMIT, ExportSummary

SPLITS = (TRAIN, VAL)


def export_coco(
    manifest_uri: str,
    dest: str,
    selection: Selection,
    *,
    storage: StorageLike | None = None,
    names: Mapping[str, str] | None = None,
    val_fraction: float = 0.2,
    copy_images: bool = False,
    overwrite: bool = False,
    supercategory: str = "none",
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
) -> ExportSummary:
    classes = class_names(selection, names)
    out = OutputDir(dest, storage)
    summary = ExportSummary.start("coco", manifest_uri, dest, classes, detail_limit=detail_limit)
    claim_destination(out, ("annotations",), "COCO", summary, overwrite=overwrite)
    next_image = dict.fromkeys(SPLITS, 1)
    next_annotation = 1
    annotations_in = dict.fromkeys(SPLITS, 0)
    with tempfile.TemporaryDirectory(prefix="labelsift-coco-") as tmp, Closing() as closing:
        parts: dict[str, tuple[IO[str], IO[str]]] = {
            split: (
                closing.add(open(f"{tmp}/{split}.images", "w+", encoding="utf-8")),  # noqa: SIM115
                closing.add(open(f"{tmp}/{split}.annotations", "w+", encoding="utf-8")),  # noqa: SIM115
            )
            for split in SPLITS
        }
        for image in detection_images(manifest_uri, selection, summary, val_fraction=val_fraction):
            record = image.record
            file_name = record.source
            if copy_images:
                file_name = image.stem + image.suffix
                rel = f"images/{image.split}/{file_name}"
                if not copy_image(out, record.source, rel, summary, overwrite=overwrite):
                    continue
            images_part, annotations_part = parts[image.split]
            image_id = next_image[image.split]
            next_image[image.split] += 1
            # hand-formatted JSON (the hot path); floats are finite, so repr is valid JSON
            images_part.write(
                f'{"," if image_id > 1 else ""}{{"id":{image_id},"file_name":{dumps(file_name)},'
                f'"width":{image.width},"height":{image.height}}}'
            )
            for obj in image.objects:
                x, y, w, h = coco_bbox(obj.box)
                annotations_part.write(
                    f'{"," if annotations_in[image.split] else ""}{{"id":{next_annotation},'
                    f'"image_id":{image_id},"category_id":{obj.class_id + 1},'
                    f'"bbox":[{x!r},{y!r},{w!r},{h!r}],'
                    f'"area":{round(w * h, 3)!r},"iscrowd":0,"score":{round(obj.confidence / 100.0, 4)!r}}}'
                )
                annotations_in[image.split] += 1
                next_annotation += 1
            count_detection(summary, image)
        categories = [
            {"id": i + 1, "name": name, "supercategory": supercategory} for i, name in enumerate(classes)
        ]
        info = {
            "description": f"labelsift export of {manifest_uri}",
            "date_created": datetime.now(UTC).isoformat(),
        }
        for split in SPLITS:
            images_part, annotations_part = parts[split]
            with out.open_text(f"annotations/instances_{split}.json") as stream:
                stream.write(f'{{"info":{dumps(info)},"licenses":[],"categories":{dumps(categories)},')
                stream.write('"images":[')
                _append(images_part, stream)
                stream.write('],"annotations":[')
                _append(annotations_part, stream)
                stream.write("]}\n")
            summary.files_written += 1
    return summary


def _append(part: IO[str], stream: IO[str]) -> None:
    part.flush()
    part.seek(0)
    shutil.copyfileobj(part, stream, 1 << 20)
