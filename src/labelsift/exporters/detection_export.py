"""The one skeleton of the detection exports (COCO, YOLO, Pascal VOC), and what they share.

A format is a `DetectionFormat`: its name, its pure stage (`convert`: one `DetectionImage` -> one
`ExportItem`, run wherever `pipeline` puts the per-record work) and its writer (a
`DetectionWriter`, opened on the destination, handed each item whose image copy is in place,
then finished). `export_detections` does the rest once, for every format:

1. setup: the class names, the val share checked before anything is made at the destination,
   the summary, the manifest required;
2. the stage: records -> decisions (`records`) -> detection images (`detections`) -> items;
3. per item, copy or skip (`place_image`): with `copy_images` the image is copied (upright when
   EXIF-rotated, unless `upright=False`) and an image that cannot be copied is skipped; without,
   the annotations name the source;
4. the writer's `add`, the summary's counts, the writer's `finish`, and the destination's commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import NamedTuple

from labelsift.select import Selection
from labelsift.views import RecordView

from .common import StorageLike
from .detections import DetectionImage, Tally, count_detection, detection_images
from .naming import check_fraction, class_names
from .owned import OwnedOutput, copy_image
from .pipeline import PER_CORE, Parallel, staged
from .records import decisions, require_manifest
from .summary import DEFAULT_DETAIL_LIMIT, ExportSummary


@dataclass(frozen=True, slots=True)
class DetectionOptions:
    """What every detection export is asked (the keyword parameters of `export_yolo` and the others).

    Attributes:
        storage: reads the sources and writes an `s3://` destination (needed to copy images).
        names: renames classes, query label -> class name.
        val_fraction: the share of images in the val split (by a hash of the source), 0-1.
        copy_images: copy each image beside its annotations; False names the sources instead.
        upright: write an EXIF-rotated image in its displayed frame (else a byte copy).
        keep_partial: export images where a selected label has no usable box (held out by default).
        overwrite: replace an earlier export in the destination (only the files its receipt lists).
        detail_limit: how many skipped images, warnings and such the summary lists (counts are whole).
        parallel: how the per-record work is spread over processes.
    """

    storage: StorageLike | None = None
    names: Mapping[str, str] | None = None
    val_fraction: float = 0.2
    copy_images: bool = True
    upright: bool = True
    keep_partial: bool = False
    overwrite: bool = False
    detail_limit: int = DEFAULT_DETAIL_LIMIT
    parallel: Parallel = PER_CORE


class ExportItem(NamedTuple):
    """One image ready to write: what its copy needs, the format's own text, and what to count."""

    source: str
    etag: str | None
    size: int | None
    split: str
    stem: str  # the exported file's stem (empty where the format names no file)
    name: str  # the file name of a copy of the image: stem + suffix (empty when not copying)
    text: str  # the format's annotation of the image (a label file, an XML, a JSON entry)
    tally: Tally
    orientation: int | None = None  # the source's EXIF orientation (a copy is made upright)
    parts: tuple[str, ...] = ()  # the format's further pieces (COCO: one JSON entry per box)


def export_item(
    image: DetectionImage, stem: str, name: str, text: str, parts: tuple[str, ...] = ()
) -> ExportItem:
    """The item of `image` with the format's `text` (and `parts`)."""
    record = image.record
    return ExportItem(
        record["source"],
        record["etag"],
        record["size"],
        image.split,
        stem,
        name,
        text,
        image.tally,
        record["orientation"],
        parts,
    )


# A format's pure stage: (image, class names, copy_images) -> item. A module-level function, so
# that worker processes can receive it (see `pipeline.Stage`).
Convert = Callable[[DetectionImage, list[str], bool], ExportItem]


class DetectionWriter:
    """Writes a format's items to the destination; the streams it opens go in `streams`, closed
    at `finish` (or, on an error, with the error: a file is whole or not there)."""

    def __init__(self, out: OwnedOutput, summary: ExportSummary, options: DetectionOptions) -> None:
        self.out = out
        self.summary = summary
        self.options = options
        self.streams = ExitStack()

    def __enter__(self) -> DetectionWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return self.streams.__exit__(exc_type, exc, tb)

    def image_path(self, item: ExportItem) -> str:
        """Where a copy of the item's image goes, relative to the destination."""
        return f"images/{item.split}/{item.name}"

    def add(self, item: ExportItem) -> None:
        """Write one item (its image copy, if any, is in place)."""
        raise NotImplementedError

    def finish(self) -> None:
        """Every item is added: close the streams and write the format's remaining files."""
        self.streams.close()


@dataclass(frozen=True, slots=True)
class DetectionFormat:
    name: str  # the summary's and the receipt's format
    convert: Convert
    writer: Callable[[OwnedOutput, ExportSummary, DetectionOptions], DetectionWriter]


def export_detections(
    fmt: DetectionFormat, manifest_uri: str, dest: str, selection: Selection, options: DetectionOptions
) -> ExportSummary:
    """Export `selection` from the manifest at `manifest_uri` to `dest` in `fmt` (see the module)."""
    classes = class_names(selection, options.names)
    check_fraction(options.val_fraction)  # before anything is made at the destination
    summary = ExportSummary.start(fmt.name, manifest_uri, dest, classes, detail_limit=options.detail_limit)
    require_manifest(manifest_uri)
    stage = partial(
        detection_items,
        selection=selection,
        val_fraction=options.val_fraction,
        keep_partial=options.keep_partial,
        copy_images=options.copy_images,
        convert=fmt.convert,
    )
    with OwnedOutput(
        dest, options.storage, fmt=fmt.name, manifest=manifest_uri, overwrite=options.overwrite
    ) as out:
        with fmt.writer(out, summary, options) as writer:
            for item in staged(manifest_uri, selection, summary, stage, options.parallel):
                if place_image(out, item, writer.image_path(item), summary, options):
                    writer.add(item)
                    count_detection(summary, item.tally)
            writer.finish()
        out.commit(summary)
    return summary


def detection_items(
    records: Iterator[RecordView | None],
    summary: ExportSummary,
    *,
    selection: Selection,
    val_fraction: float,
    keep_partial: bool,
    copy_images: bool,
    convert: Convert,
) -> Iterator[ExportItem]:
    """The export's stage (see `pipeline`): records -> the format's items."""
    classes = summary.classes
    decided = decisions(records, selection, summary)
    for image in detection_images(decided, summary, val_fraction=val_fraction, keep_partial=keep_partial):
        yield convert(image, classes, copy_images)


def place_image(
    out: OwnedOutput, item: ExportItem, rel: str, summary: ExportSummary, options: DetectionOptions
) -> bool:
    """Copy the item's image to `rel` (`copy_images`), or note that the annotations name its
    source; False when it cannot be copied (counted as skipped: the item is not written)."""
    if not options.copy_images:
        out.note_source(item.source)
        return True
    turn = item.orientation if options.upright else None
    return copy_image(out, item.source, item.etag, item.size, rel, summary, orientation=turn)
