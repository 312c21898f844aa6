"""What every exporter shares: the class list, splits, safe file names, boxes, and output places.

- Class order: the order the labels were given to the `Selection` (renamed through `names`), the
  same in every file and split of an export.
- Split: `val` when a hash of the source URI falls under `val_fraction`, else `train`; it depends on
  nothing but the source, so adding images never moves old ones.
- File names: `<sanitised key path>-<12 hex of sha1(source)>.<ext>`: unique even when two sources
  share a basename, a single path segment (no `/`, never `.` or `..`), so it cannot leave the
  destination.
- Boxes: converted by `labelsift.geometry` in the displayed frame; every dropped box is counted.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pydantic_core import to_json

from labelsift.errors import UsageError
from labelsift.geometry import DropReason, PixelBox, to_pixels
from labelsift.manifest import exists as manifest_exists
from labelsift.manifest import iter_records_mentioning
from labelsift.manifest_inputs import expand_manifest_inputs, one_manifest
from labelsift.select import REVIEW, SELECTED, Decision, LabelDecision, Selection
from labelsift.storage import ObjectInfo, is_s3, split_s3
from labelsift.uri import parse_recorded
from labelsift.views import RecordView

from .summary import ALL, ExportSummary

TRAIN = "train"
VAL = "val"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {"JPEG": ".jpg", "JPG": ".jpg", "PNG": ".png"}
_BELOW_THRESHOLD = DropReason.BELOW_THRESHOLD.value
_NO_IMAGE_SIZE = DropReason.NO_IMAGE_SIZE.value
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class StorageLike(Protocol):
    """The part of `labelsift.storage.Storage` the exporters use."""

    def copy(self, src: str, dst: str, *, overwrite: bool = False) -> bool: ...

    def write(self, uri: str, data: bytes) -> None: ...

    def list(self, root: str, *, images_only: bool = True) -> Iterator[ObjectInfo]: ...

    def remove(self, uri: str) -> int: ...

    def exists(self, uri: str) -> ObjectInfo | None: ...

    def read(self, uri: str, *, if_match: str | None = None, limit: int | None = None) -> bytes: ...


def class_names(selection: Selection, names: Mapping[str, str] | None) -> list[str]:
    """Output class names in selection order; `names` maps a query label to another name."""
    mapping = {k.lower(): v for k, v in (names or {}).items()}
    queries = {q.lower() for q in selection.labels}
    unknown = [k for k in (names or {}) if k.lower() not in queries]
    labels = ", ".join(selection.labels)
    if unknown:
        raise UsageError(
            f"--name {unknown[0]}={(names or {})[unknown[0]]}: {unknown[0]!r} is not one of the labels "
            f"exported ({labels}); rename only a label given with --label."
        )
    out = [mapping.get(q.lower(), q) for q in selection.labels]
    for name in out:
        if not name.strip():
            raise UsageError("--name: a class name is empty; write LABEL=NAME, e.g. --name Bird=robin.")
    taken: dict[str, str] = {}
    for query, name in zip(selection.labels, out, strict=True):
        if name.lower() in taken:
            raise UsageError(
                f"--name: {taken[name.lower()]} and {query} would both be the class {name!r}; give "
                "each label its own name (to merge labels, export them under one --label)."
            )
        taken[name.lower()] = query
    return out


def source_digest(source: str) -> bytes:
    return hashlib.sha1(source.encode("utf-8")).digest()


def check_fraction(val_fraction: float) -> None:
    if not 0.0 <= val_fraction <= 1.0:  # NaN fails this too
        raise UsageError(
            f"--val {val_fraction}: give the share of images for the val split, from 0 to 1 (e.g. 0.2)."
        )


def split_for(source: str, val_fraction: float, digest: bytes | None = None) -> str:
    """`val` or `train`, from a hash of the source alone (stable as the dataset grows)."""
    check_fraction(val_fraction)
    return _split(digest or source_digest(source), val_fraction)


def _split(digest: bytes, val_fraction: float) -> str:
    return VAL if int.from_bytes(digest[:8], "big") / 2.0**64 < val_fraction else TRAIN


def key_path(source: str) -> str:
    """The path part of a source: the key for `s3://bucket/key`, else the path without its anchor."""
    if is_s3(source):
        return split_s3(source)[1]
    if "://" in source:
        return source.split("://", 1)[1]
    return Path(source).as_posix().lstrip("/")


def file_name_parts(source: str, image_format: str | None, digest: bytes | None = None) -> tuple[str, str]:
    """(`safe_stem`, extension) of the file an image is exported as: the source's own extension if it
    is an image's, else its format's."""
    root, ext = os.path.splitext(key_path(source))
    return _stem(root, digest or source_digest(source)), _suffix(ext, image_format)


def safe_stem(source: str, max_len: int = 100, digest: bytes | None = None) -> str:
    """A unique, single-segment file stem derived from the source's key path."""
    return _stem(os.path.splitext(key_path(source))[0], digest or source_digest(source), max_len)


def _suffix(ext: str, image_format: str | None) -> str:
    suffix = ext.lower()
    if suffix in _IMAGE_SUFFIXES:
        return suffix
    return _EXTENSIONS.get((image_format or "").upper(), ".jpg")


def _stem(root: str, digest: bytes, max_len: int = 100) -> str:
    clean = _UNSAFE.sub("_", root.replace("/", "_")).strip("._") or "image"
    if len(clean) > max_len:
        clean = clean[-max_len:].lstrip("._") or "image"
    return f"{clean}-{digest.hex()[:12]}"


UNSAFE_SOURCE = "unsafe_source"


def unsafe_source(source: str) -> str | None:
    """Why `source` is not in the form a scan records (so an export must not read it), or None
    (`labelsift.uri.parse_recorded` decides: `/data/../../etc/hostname`, a relative path, a NUL)."""
    try:
        parse_recorded(source)
    except UsageError as error:
        return str(error)
    return None


def check_relative(rel: str) -> str:
    """Refuse a relative destination path that is absolute or could climb out of its root."""
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{rel!r} is not a safe relative path under the destination")
    return rel


def decisions(
    records: Iterable[RecordView | None], selection: Selection, summary: ExportSummary
) -> Iterator[Decision]:
    """Decisions for every effective record, counting records and held-out images."""
    classes = summary.classes
    count = 0
    try:
        for record in records:
            count += 1
            if record is None:  # names none of the labels and no person judged it: nothing to select
                continue
            why = unsafe_source(record["source"])
            if why is not None:  # not what a scan records: never read, copied or named in an export
                summary.skip(record["source"], UNSAFE_SOURCE, f"not exported: {why}")
                continue
            decision = selection.decide(record)
            if selection.band is not None:
                for i, label in enumerate(decision.labels):
                    if label.outcome is REVIEW:
                        summary.per_label[classes[i]].held_out += 1
            yield decision
    finally:
        summary.records += count


def require_manifest(uri: str) -> None:
    """Refuse a manifest that is not there: read as empty, a mistyped path would export nothing.
    A folder or `s3://` prefix must hold shards (`manifest_inputs`)."""
    for shard in expand_manifest_inputs(uri):
        if not manifest_exists(shard):
            raise FileNotFoundError(errno.ENOENT, "no such manifest", shard)


def iter_decisions(manifest_uri: str, selection: Selection, summary: ExportSummary) -> Iterator[Decision]:
    """`decisions` over the whole manifest, in this process (for exports bound by copying); a
    folder or prefix of shards is read as one manifest (`manifest_inputs.one_manifest`)."""
    require_manifest(manifest_uri)
    words = (query.strip() for query in selection.labels)
    with one_manifest(manifest_uri) as readable:
        yield from decisions(iter_records_mentioning(readable, words), selection, summary)


class DetectionObject(NamedTuple):
    class_id: int
    box: PixelBox
    confidence: float  # 0-100; 100 for a person's box
    human: bool


class Tally(NamedTuple):
    """What the summary counts for one written image: its split and, per class, boxes and who decided."""

    split: str
    labels: tuple[tuple[int, int, bool], ...]  # (class id, boxes, decided by a person)


@dataclass(slots=True)
class DetectionImage:
    record: RecordView
    split: str
    digest: bytes  # of the source; empty where no split needed it (`file_name` makes it then)
    objects: list[DetectionObject]
    labels: list[tuple[int, LabelDecision]]  # selected labels with boxes
    tally: Tally

    @property
    def width(self) -> int:
        width = self.record["width"]
        assert width is not None
        return width

    @property
    def height(self) -> int:
        height = self.record["height"]
        assert height is not None
        return height

    @property
    def human(self) -> bool:
        return any(d.human for _, d in self.labels)

    def file_name(self) -> tuple[str, str]:
        """(stem, suffix) of the image's exported file (computed on demand: not every format names files)."""
        return file_name_parts(self.record["source"], self.record["format"], self.digest)


def instance_box(instance: Mapping[str, Any], width: int, height: int) -> PixelBox | DropReason:
    """An instance's ratio box in pixels of a `width` x `height` image, or why it is unusable."""
    return to_pixels(instance["left"], instance["top"], instance["width"], instance["height"], width, height)


def labels_without_boxes(decision: Decision) -> list[LabelDecision]:
    """The selected labels of an image that have no usable box in it: what detection exports hold
    out as `label_without_boxes` (or `no_boxes`), for people to box. None for a record without a
    size (no box can be placed there at all: `no_image_size`)."""
    width, height = decision.record["width"], decision.record["height"]
    if width is None or height is None:
        return []
    return [
        label
        for label in decision.selected
        if all(isinstance(instance_box(i, width, height), DropReason) for i in label.instances)
    ]


def detection_images(
    decided: Iterable[Decision],
    summary: ExportSummary,
    *,
    val_fraction: float | None,
    keep_partial: bool = False,
) -> Iterator[DetectionImage]:
    """Selected images with a usable box for every selected label, one object per box, in class order.

    `val_fraction=None` puts every image in the one split `all`. Skips (counted in the summary):
    records without a displayed size, and images whose selected labels have no usable box. An
    image where a selected label has no usable box (a dog photo whose dog box is below the
    threshold) would teach a detector "no dog here": it is held out (`without_boxes`, reason
    `label_without_boxes`, for people to box: `labelsift export review`), unless `keep_partial`,
    which exports it without that label and warns.
    """
    if val_fraction is not None:
        check_fraction(val_fraction)
    classes = summary.classes
    for decision in decided:
        record = decision.record
        width, height = record["width"], record["height"]
        selected: list[int] = []
        drops: dict[str, int] = {}
        objects: list[DetectionObject] = []
        labels: list[tuple[int, LabelDecision]] = []
        counts: list[tuple[int, int, bool]] = []
        for class_id, label in enumerate(decision.labels):
            if label.outcome is not SELECTED:
                continue
            selected.append(class_id)
            if label.below_threshold_boxes:
                drops[_BELOW_THRESHOLD] = drops.get(_BELOW_THRESHOLD, 0) + label.below_threshold_boxes
            instances = label.instances
            if not instances:
                continue
            if width is None or height is None:
                drops[_NO_IMAGE_SIZE] = drops.get(_NO_IMAGE_SIZE, 0) + len(instances)
                continue
            human = label.human
            usable = 0
            for inst in instances:
                box = instance_box(inst, width, height)
                if isinstance(box, DropReason):
                    drops[box.value] = drops.get(box.value, 0) + 1
                    continue
                usable += 1
                objects.append(DetectionObject(class_id, box, 100.0 if human else inst["confidence"], human))
            if usable:
                labels.append((class_id, label))
                counts.append((class_id, usable, human))
        if not selected:
            continue
        if drops:
            summary.drop_boxes(drops)
        if width is None or height is None:
            summary.skip(record["source"], "no_image_size", "the record has no width/height; boxes need them")
            continue
        if not objects:
            summary.skip(record["source"], "no_boxes", "selected, but no usable box for any selected label")
            continue
        if len(labels) < len(selected):
            with_boxes = {i for i, _ in labels}
            missing = [class_id for class_id in selected if class_id not in with_boxes]
            for class_id in missing:
                summary.per_label[classes[class_id]].without_boxes += 1
            if not keep_partial:
                summary.skip(
                    record["source"],
                    "label_without_boxes",
                    "held out: selected for this label but no box of it passes; a person should box it "
                    "(labelsift export review), or export with --keep-partial",
                    classes[missing[0]],
                )
                continue
            for class_id in missing:
                summary.warn(
                    record["source"],
                    "label_without_boxes",
                    "selected for this label but it has no usable box here; exported without it",
                    classes[class_id],
                )
        if val_fraction is None:
            digest, split = b"", ALL
        else:
            digest = source_digest(record["source"])
            split = _split(digest, val_fraction)
        yield DetectionImage(record, split, digest, objects, labels, Tally(split, tuple(counts)))


class AnnotationFile(NamedTuple):
    """One image's own annotation file (YOLO, VOC), ready to write."""

    source: str
    etag: str | None
    size: int | None
    split: str
    stem: str
    name: str  # the file name of a copy of the image: stem + suffix
    text: str
    tally: Tally
    orientation: int | None = None  # the source's EXIF orientation (a copy is made upright)


def count_detection(summary: ExportSummary, tally: Tally) -> None:
    """Count an image once it has been written."""
    classes = summary.classes
    summary.count_export(tally.split)
    for class_id, boxes, human in tally.labels:
        summary.count_image(classes[class_id], tally.split, boxes, human=human)


def error_code(error: Exception) -> str:
    """A short code for a per-image failure: the storage error's code, else the exception's name."""
    return str(getattr(error, "code", "") or type(error).__name__)


def dump_json(value: Any) -> str:
    """Compact JSON, UTF-8 as is (no `\\u` escapes): pydantic-core's serializer, 3x `json.dumps`."""
    return to_json(value).decode("utf-8")
