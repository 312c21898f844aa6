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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

import smart_open
from pydantic_core import to_json

from labelsift import uri
from labelsift.errors import UsageError
from labelsift.geometry import DropReason, PixelBox, to_pixels
from labelsift.manifest import exists as manifest_exists
from labelsift.manifest import iter_records_mentioning
from labelsift.select import REVIEW, SELECTED, Decision, LabelDecision, Selection
from labelsift.storage import ObjectInfo, StorageError, is_s3, remove_local, split_s3
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


def check_relative(rel: str) -> str:
    """Refuse a relative destination path that is absolute or could climb out of its root."""
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{rel!r} is not a safe relative path under the destination")
    return rel


class OutputDir:
    """A destination folder, local or `s3://`: joins, small writes, streamed writes, copies in."""

    def __init__(self, root: str, storage: StorageLike | None) -> None:
        uri.parse(root, what="destination")  # a presigned or http(s) URL, `s3:/`: exit 2, never a folder
        self.local = not is_s3(root)
        self.root = str(Path(root).expanduser()) if self.local else root.rstrip("/")
        self.storage = storage
        self._made: set[str] = set()

    def uri(self, rel: str) -> str:
        check_relative(rel)
        if not self.local:
            return f"{self.root}/{rel}"
        return f"{self.root}{os.sep}{rel}" if os.sep == "/" else os.path.join(self.root, *rel.split("/"))

    def _parent(self, path: str) -> None:
        parent = os.path.dirname(path)
        if parent not in self._made:
            os.makedirs(parent, exist_ok=True)
            self._made.add(parent)

    def write_bytes(self, rel: str, data: bytes) -> None:
        target = self.uri(rel)
        if self.local:
            self._parent(target)
            # os-level calls: one small file per image is the hot path of YOLO and VOC exports
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                written = os.write(fd, data)
                if written < len(data):  # a short write: rare, but allowed
                    view = memoryview(data)[written:]
                    while view:
                        view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        else:
            self._need_storage().write(target, data)

    def open_text(self, rel: str) -> IO[str]:
        """A text stream to `rel`: a local file, or a streamed (multipart) S3 upload."""
        target = self.uri(rel)
        if self.local:
            self._parent(target)
            return open(target, "w", encoding="utf-8")
        stream: IO[str] = smart_open.open(target, "w", encoding="utf-8")
        return stream

    def copy_in(self, source: str, rel: str, *, overwrite: bool) -> bool:
        """Copy an image to `rel` (server-side for S3 -> S3); False when the same object was there."""
        target = self.uri(rel)
        if self.local:
            self._parent(target)
        return self._need_storage().copy(source, target, overwrite=overwrite)

    def holds(self, rel: str) -> bool:
        """Whether `rel` is a file, or a folder with anything in it, at the destination."""
        target = self.uri(rel)
        if self.local:
            if os.path.isdir(target):
                with os.scandir(target) as entries:
                    return next(entries, None) is not None
            return os.path.lexists(target)
        return next(iter(self._need_storage().list(target, images_only=False)), None) is not None

    def files(self, rel: str) -> Iterator[str]:
        """Names of the files in the folder `rel` (not recursive locally; every key under it in S3)."""
        target = self.uri(rel)
        if self.local:
            if os.path.isdir(target):
                with os.scandir(target) as entries:
                    yield from (e.name for e in entries if e.is_file(follow_symlinks=False))
            return
        for info in self._need_storage().list(target, images_only=False):
            yield info.key

    def remove(self, rel: str) -> int:
        """Delete the file or folder `rel`; how many files went."""
        target = self.uri(rel)
        if not self.local:
            return self._need_storage().remove(target)
        try:
            return remove_local(target)
        except OSError as error:
            raise StorageError(
                "DeleteFailed",
                target,
                f"Could not delete {target} ({error.strerror}) to replace an earlier export. Check the "
                "folder's permissions, or export into an empty folder.",
                fatal=True,
            ) from error

    def _need_storage(self) -> StorageLike:
        if self.storage is None:
            raise ValueError(f"{self.root}: writing here needs a `storage`")
        return self.storage


def copy_image(
    out: OutputDir,
    source: str,
    rel: str,
    summary: ExportSummary,
    *,
    overwrite: bool,
    label: str | None = None,
) -> bool:
    """Copy one image to `rel` and count it; False when it could not be copied (counted as skipped).

    One bad image never stops an export; a fatal error (credentials, access, no bucket) does.
    """
    try:
        if out.copy_in(source, rel, overwrite=overwrite):
            summary.copied += 1
        else:
            summary.already_present += 1
    except Exception as error:
        if getattr(error, "fatal", False):
            raise
        summary.skip(source, error_code(error), str(error), label)
        return False
    return True


def claim_destination(
    out: OutputDir, generated: tuple[str, ...], fmt: str, summary: ExportSummary, *, overwrite: bool
) -> bool:
    """Make room for this export's annotation files (`generated`: files and folders it writes).

    If an earlier export left any of them, refuse unless `overwrite`; with it, delete them first,
    so no annotation of the earlier export outlives this one (a rerun with a higher threshold must
    not keep the images the lower one took). True when an earlier export was replaced.
    """
    earlier = [rel for rel in generated if out.holds(rel)]
    if not earlier:
        return False
    if not overwrite:
        raise StorageError(
            "Exists",
            out.uri(earlier[0]),
            f"{out.root} already holds a {fmt} export ({earlier[0]}). Pass --overwrite to replace it "
            "(its annotations are deleted first; images already copied are reused when unchanged), "
            "or export into an empty folder.",
            fatal=True,
        )
    for rel in earlier:
        summary.replaced += out.remove(rel)
    return True


def prune_images(
    out: OutputDir, folder: str, annotation_for: Callable[[str], str], summary: ExportSummary
) -> None:
    """Delete the images in `folder` that no annotation file of this export names (an earlier
    export's): YOLO and VOC readers would otherwise take them as images with nothing in them."""
    for name in out.files(folder):
        if not out.holds(annotation_for(os.path.splitext(name)[0])):
            summary.replaced += out.remove(f"{folder}/{name}")


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
            decision = selection.decide(record)
            if selection.band is not None:
                for i, label in enumerate(decision.labels):
                    if label.outcome is REVIEW:
                        summary.per_label[classes[i]].held_out += 1
            yield decision
    finally:
        summary.records += count


def require_manifest(uri: str) -> None:
    """Refuse a manifest that is not there: read as empty, a mistyped path would export nothing."""
    if not manifest_exists(uri):
        raise FileNotFoundError(errno.ENOENT, "no such manifest", uri)


def iter_decisions(manifest_uri: str, selection: Selection, summary: ExportSummary) -> Iterator[Decision]:
    """`decisions` over the whole manifest, in this process (for exports bound by copying)."""
    require_manifest(manifest_uri)
    words = (query.strip() for query in selection.labels)
    return decisions(iter_records_mentioning(manifest_uri, words), selection, summary)


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


def detection_images(
    decided: Iterable[Decision], summary: ExportSummary, *, val_fraction: float | None
) -> Iterator[DetectionImage]:
    """Selected images with at least one usable box, one object per box, in class order.

    `val_fraction=None` puts every image in the one split `all`. Skips (counted in the summary):
    records without a displayed size, and images whose selected
    labels have no usable box. A selected label without boxes on an image that has other boxes is
    warned about (`without_boxes`): the image is exported without it.
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
                box = to_pixels(inst["left"], inst["top"], inst["width"], inst["height"], width, height)
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
            for class_id in selected:
                if class_id not in with_boxes:
                    summary.per_label[classes[class_id]].without_boxes += 1
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
    split: str
    stem: str
    name: str  # the file name of a copy of the image: stem + suffix
    text: str
    tally: Tally


def count_detection(summary: ExportSummary, tally: Tally) -> None:
    """Count an image once it has been written."""
    classes = summary.classes
    summary.count_export(tally.split)
    for class_id, boxes, human in tally.labels:
        summary.count_image(classes[class_id], tally.split, boxes, human=human)


def error_code(error: Exception) -> str:
    """A short code for a per-image failure: the storage error's code, else the exception's name."""
    return str(getattr(error, "code", "") or type(error).__name__)


def claim_file(uri: str, fmt: str, *, overwrite: bool) -> None:
    """Refuse to replace an existing output file unless `overwrite`."""
    there = os.path.lexists(Path(uri).expanduser()) if not is_s3(uri) else manifest_exists(uri)
    if there and not overwrite:
        raise StorageError(
            "Exists",
            uri,
            f"{uri} already exists. Pass --overwrite to replace it with this {fmt} export, "
            "or write to another file.",
            fatal=True,
        )


def open_output_file(uri: str) -> IO[str]:
    """A text stream to one output file, local (parents made) or `s3://` (streamed upload)."""
    if is_s3(uri):
        stream: IO[str] = smart_open.open(uri, "w", encoding="utf-8")
        return stream
    path = Path(uri).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("w", encoding="utf-8")


def dump_json(value: Any) -> str:
    """Compact JSON, UTF-8 as is (no `\\u` escapes): pydantic-core's serializer, 3x `json.dumps`."""
    return to_json(value).decode("utf-8")


class Closing(AbstractContextManager["Closing"]):
    """Close several streams together (all of them, even if one fails)."""

    def __init__(self) -> None:
        self._streams: list[IO[str]] = []

    def add(self, stream: IO[str]) -> IO[str]:
        self._streams.append(stream)
        return stream

    def __exit__(self, *exc: object) -> None:
        errors: list[BaseException] = []
        for stream in reversed(self._streams):
            try:
                stream.close()
            except BaseException as error:
                errors.append(error)
        if errors:
            raise errors[0]
