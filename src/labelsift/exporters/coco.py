"""COCO detection: `annotations/instances_<split>.json` per split, written by streaming.

Pixels are in the DISPLAYED frame (after EXIF orientation), from the record's width/height: a
loader must apply the EXIF tag to the image it reads (PIL `ImageOps.exif_transpose`, OpenCV's
`imread` does by default). With `copy_images=True` (the default) the images are copied to
`images/<split>/<unique name>` (upright: EXIF applied when the source is rotated) and `file_name`
is that name, the layout Datumaro and pycocotools users expect; with False `file_name` is the
source URI. Each annotation has an empty `segmentation` (a detection has none): Datumaro warns
once per annotation without the field, and reads a box polygon as a second annotation.

Memory holds a few batches of records at most (`pipeline`): image and annotation entries are
appended to temporary files while the manifest streams, then stitched into each JSON file. Image
ids count from 1 per split, annotation ids from 1 across the whole export, category ids from 1 in
selection order.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import partial
from typing import IO

from labelsift.geometry import coco_bbox
from labelsift.select import Selection

from .common import StorageLike
from .common import dump_json as dumps
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

SPLITS = (TRAIN, VAL)


def export_coco(
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
    supercategory: str = "none",
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
    parallel: Parallel = PER_CORE,
) -> ExportSummary:
    """Write COCO detection JSON of `selection` from the manifest at `manifest_uri` to `dest`.

    Args:
        manifest_uri: the manifest to read (a file, or a folder or `s3://` prefix of shards).
        dest: the destination folder, local or `s3://bucket/prefix`.
        selection: the labels to export and how records are selected.
        storage, names, val_fraction, upright, keep_partial, overwrite, detail_limit, parallel:
            the fields of `DetectionOptions`, documented there (shared by every detection export).
        copy_images: copy each image to `images/<split>/`; False makes `file_name` the source URI.

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
    coco = DetectionFormat("coco", coco_item, partial(CocoWriter, supercategory=supercategory))
    return export_detections(coco, manifest_uri, dest, selection, options)


def coco_item(image: DetectionImage, classes: list[str], copy_images: bool) -> ExportItem:
    """The image's COCO entry (its JSON after `{"id":N,`) and one annotation per box (its JSON
    after `{"id":N,"image_id":M,`); the writer adds the ids."""
    name = "".join(image.file_name()) if copy_images else ""
    file_name = name if copy_images else image.record["source"]
    annotations = []
    for obj in image.objects:
        x, y, w, h = coco_bbox(obj.box)
        # hand-formatted JSON (the hot path): pixels to 3 decimals, scores to 4
        annotations.append(
            f'"category_id":{obj.class_id + 1},"bbox":[{x:.3f},{y:.3f},{w:.3f},{h:.3f}],'
            '"segmentation":[],'
            f'"area":{w * h:.3f},"iscrowd":0,"score":{obj.confidence / 100.0:.4f}}}'
        )
    entry = f'"file_name":{dumps(file_name)},"width":{image.width},"height":{image.height}}}'
    return export_item(image, "", name, entry, tuple(annotations))


class CocoWriter(DetectionWriter):
    """Appends image and annotation entries to temporary files per split while the manifest
    streams, then stitches them into `annotations/instances_<split>.json`."""

    def __init__(
        self, out: OwnedOutput, summary: ExportSummary, options: DetectionOptions, *, supercategory: str
    ) -> None:
        super().__init__(out, summary, options)
        self.supercategory = supercategory
        tmp = self.streams.enter_context(tempfile.TemporaryDirectory(prefix="labelsift-coco-"))
        self.parts: dict[str, tuple[IO[str], IO[str]]] = {
            split: (self._part(f"{tmp}/{split}.images"), self._part(f"{tmp}/{split}.annotations"))
            for split in SPLITS
        }
        self.next_image = dict.fromkeys(SPLITS, 1)
        self.next_annotation = 1
        self.annotations_in = dict.fromkeys(SPLITS, 0)

    def _part(self, path: str) -> IO[str]:
        return self.streams.enter_context(open(path, "w+", encoding="utf-8"))

    def add(self, item: ExportItem) -> None:
        images_part, annotations_part = self.parts[item.split]
        image_id = self.next_image[item.split]
        self.next_image[item.split] += 1
        images_part.write(f'{"," if image_id > 1 else ""}{{"id":{image_id},{item.text}')
        for tail in item.parts:
            annotations_part.write(
                f"{',' if self.annotations_in[item.split] else ''}"
                f'{{"id":{self.next_annotation},"image_id":{image_id},{tail}'
            )
            self.annotations_in[item.split] += 1
            self.next_annotation += 1

    def finish(self) -> None:
        classes = self.summary.classes
        categories = [
            {"id": i + 1, "name": name, "supercategory": self.supercategory} for i, name in enumerate(classes)
        ]
        info = {
            "description": f"labelsift export of {self.summary.manifest}",
            "date_created": datetime.now(UTC).isoformat(),
        }
        head = f'{{"info":{dumps(info)},"licenses":[],"categories":{dumps(categories)},'
        for split in SPLITS:
            images_part, annotations_part = self.parts[split]
            with self.out.open_text(f"annotations/instances_{split}.json") as stream:
                stream.write(head)
                stream.write('"images":[')
                _append(images_part, stream)
                stream.write('],"annotations":[')
                _append(annotations_part, stream)
                stream.write("]}\n")
            self.summary.files_written += 1
        super().finish()


def _append(part: IO[str], stream: TextSink) -> None:
    part.flush()
    part.seek(0)
    shutil.copyfileobj(part, stream, 1 << 20)
