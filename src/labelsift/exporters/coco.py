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
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial
from typing import IO, NamedTuple

from labelsift.geometry import coco_bbox
from labelsift.select import Selection
from labelsift.views import RecordView

from .common import (
    TRAIN,
    VAL,
    StorageLike,
    Tally,
    check_fraction,
    class_names,
    count_detection,
    decisions,
    detection_images,
    require_manifest,
)
from .common import dump_json as dumps
from .owned import OwnedOutput, TextSink, copy_image
from .pipeline import PER_CORE, Parallel, staged
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

    The parameters are `export_yolo`'s (names, val_fraction, copy_images, upright, keep_partial,
    overwrite, parallel) and `supercategory` for every category; returns the counts and reasons
    of what was written or left out.
    """
    classes = class_names(selection, names)
    check_fraction(val_fraction)  # before anything is made at the destination
    summary = ExportSummary.start("coco", manifest_uri, dest, classes, detail_limit=detail_limit)
    require_manifest(manifest_uri)
    with OwnedOutput(dest, storage, fmt="coco", manifest=manifest_uri, overwrite=overwrite) as out:
        options = _Options(val_fraction, copy_images, upright, keep_partial, supercategory)
        _write(out, manifest_uri, selection, summary, classes, options, parallel)
        out.commit(summary)
    return summary


class _Options(NamedTuple):
    val_fraction: float
    copy_images: bool
    upright: bool
    keep_partial: bool
    supercategory: str


def _write(
    out: OwnedOutput,
    manifest_uri: str,
    selection: Selection,
    summary: ExportSummary,
    classes: list[str],
    options: _Options,
    parallel: Parallel,
) -> None:
    val_fraction, copy_images, upright, keep_partial, supercategory = options
    next_image = dict.fromkeys(SPLITS, 1)
    next_annotation = 1
    annotations_in = dict.fromkeys(SPLITS, 0)
    with tempfile.TemporaryDirectory(prefix="labelsift-coco-") as tmp, ExitStack() as closing:
        parts: dict[str, tuple[IO[str], IO[str]]] = {
            split: (
                closing.enter_context(open(f"{tmp}/{split}.images", "w+", encoding="utf-8")),
                closing.enter_context(open(f"{tmp}/{split}.annotations", "w+", encoding="utf-8")),
            )
            for split in SPLITS
        }
        stage = partial(
            coco_images,
            selection=selection,
            val_fraction=val_fraction,
            copy_images=copy_images,
            keep_partial=keep_partial,
        )
        for image in staged(manifest_uri, selection, summary, stage, parallel):
            if copy_images:
                rel = f"images/{image.split}/{image.name}"
                turn = image.orientation if upright else None
                if not copy_image(out, image.source, image.etag, image.size, rel, summary, orientation=turn):
                    continue
            images_part, annotations_part = parts[image.split]
            image_id = next_image[image.split]
            next_image[image.split] += 1
            images_part.write(f'{"," if image_id > 1 else ""}{{"id":{image_id},{image.image}')
            for tail in image.annotations:
                annotations_part.write(
                    f"{',' if annotations_in[image.split] else ''}"
                    f'{{"id":{next_annotation},"image_id":{image_id},{tail}'
                )
                annotations_in[image.split] += 1
                next_annotation += 1
            if not copy_images:
                out.note_source(image.source)
            count_detection(summary, image.tally)
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


class CocoImage(NamedTuple):
    """One image ready to write; the writer adds the ids (`{"id":N,` and `{"id":N,"image_id":M,`)."""

    source: str
    etag: str | None
    size: int | None
    split: str
    name: str  # the file name of a copy (empty when images are not copied)
    image: str  # the image entry's JSON after its id
    annotations: tuple[str, ...]  # each annotation's JSON after its image id
    tally: Tally
    orientation: int | None = None


def coco_images(
    records: Iterator[RecordView | None],
    summary: ExportSummary,
    *,
    selection: Selection,
    val_fraction: float,
    copy_images: bool,
    keep_partial: bool = False,
) -> Iterator[CocoImage]:
    """The export's stage (see `pipeline`): records -> COCO entries."""
    decided = decisions(records, selection, summary)
    for image in detection_images(decided, summary, val_fraction=val_fraction, keep_partial=keep_partial):
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
        yield CocoImage(
            image.record["source"],
            image.record["etag"],
            image.record["size"],
            image.split,
            name,
            f'"file_name":{dumps(file_name)},"width":{image.width},"height":{image.height}}}',
            tuple(annotations),
            image.tally,
            image.record["orientation"],
        )


def _append(part: IO[str], stream: TextSink) -> None:
    part.flush()
    part.seek(0)
    shutil.copyfileobj(part, stream, 1 << 20)
