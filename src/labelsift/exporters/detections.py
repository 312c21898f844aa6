"""Detection images: the selected images of an export with their boxes, one object per box.

Boxes are converted by `labelsift.geometry` in the displayed frame; every dropped box is counted
in the summary by reason, and every image left out by code (`no_image_size`, `no_boxes`,
`label_without_boxes`). An image where a selected label has no usable box (a dog photo whose dog
box is below the threshold) would teach a detector "no dog here": it is held out for people to
box (`labelsift export review`), unless the export keeps partial images.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from labelsift.geometry import DropReason, PixelBox, to_pixels
from labelsift.select import SELECTED, Decision, LabelDecision
from labelsift.views import RecordView

from .naming import check_fraction, file_name_parts, source_digest, split_by_digest
from .summary import ALL, ExportSummary

_BELOW_THRESHOLD = DropReason.BELOW_THRESHOLD.value
_NO_IMAGE_SIZE = DropReason.NO_IMAGE_SIZE.value


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
    image where a selected label has no usable box is held out (`without_boxes`, reason
    `label_without_boxes`, for people to box: `labelsift export review`), unless `keep_partial`,
    which exports it without that label and warns.
    """
    if val_fraction is not None:
        check_fraction(val_fraction)
    for decision in decided:
        found = _boxes_of(decision)
        if not found.selected or not _exported(decision.record, found, summary, keep_partial):
            continue
        source = decision.record["source"]
        if val_fraction is None:
            digest, split = b"", ALL
        else:
            digest = source_digest(source)
            split = split_by_digest(digest, val_fraction)
        tally = Tally(split, tuple(found.counts))
        yield DetectionImage(decision.record, split, digest, found.objects, found.labels, tally)


@dataclass(slots=True)
class _Found:
    """What one image's selected labels give: their class ids, usable boxes, and dropped ones."""

    selected: list[int] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)  # reason -> boxes
    objects: list[DetectionObject] = field(default_factory=list)
    labels: list[tuple[int, LabelDecision]] = field(default_factory=list)  # those with a usable box
    counts: list[tuple[int, int, bool]] = field(default_factory=list)  # (class id, boxes, human)


def _boxes_of(decision: Decision) -> _Found:
    """The usable boxes of every selected label of the image, and why the others were dropped."""
    width, height = decision.record["width"], decision.record["height"]
    found = _Found()
    drops = found.drops
    for class_id, label in enumerate(decision.labels):
        if label.outcome is not SELECTED:
            continue
        found.selected.append(class_id)
        if label.below_threshold_boxes:
            drops[_BELOW_THRESHOLD] = drops.get(_BELOW_THRESHOLD, 0) + label.below_threshold_boxes
        if not label.instances:
            continue
        if width is None or height is None:
            drops[_NO_IMAGE_SIZE] = drops.get(_NO_IMAGE_SIZE, 0) + len(label.instances)
            continue
        usable = _add_objects(found, class_id, label, width, height)
        if usable:
            found.labels.append((class_id, label))
            found.counts.append((class_id, usable, label.human))
    return found


def _add_objects(found: _Found, class_id: int, label: LabelDecision, width: int, height: int) -> int:
    """Add one object per usable box of `label`, count the others by reason; the usable ones."""
    human = label.human
    drops, objects = found.drops, found.objects
    usable = 0
    for inst in label.instances:
        box = instance_box(inst, width, height)
        if isinstance(box, DropReason):
            drops[box.value] = drops.get(box.value, 0) + 1
            continue
        usable += 1
        objects.append(DetectionObject(class_id, box, 100.0 if human else inst["confidence"], human))
    return usable


def _exported(record: RecordView, found: _Found, summary: ExportSummary, keep_partial: bool) -> bool:
    """Whether a selected image is exported; counts its dropped boxes, and why it is not."""
    if found.drops:
        summary.drop_boxes(found.drops)
    if record["width"] is None or record["height"] is None:
        summary.skip(record["source"], "no_image_size", "the record has no width/height; boxes need them")
        return False
    if not found.objects:
        summary.skip(record["source"], "no_boxes", "selected, but no usable box for any selected label")
        return False
    if len(found.labels) < len(found.selected):
        return _partial(record["source"], found, summary, keep_partial)
    return True


def _partial(source: str, found: _Found, summary: ExportSummary, keep_partial: bool) -> bool:
    """An image where some selected label has no usable box: held out, or (`keep_partial`)
    exported without that label with a warning. Counted as `without_boxes` for that label."""
    classes = summary.classes
    with_boxes = {i for i, _ in found.labels}
    missing = [class_id for class_id in found.selected if class_id not in with_boxes]
    for class_id in missing:
        summary.per_label[classes[class_id]].without_boxes += 1
    if not keep_partial:
        summary.skip(
            source,
            "label_without_boxes",
            "held out: selected for this label but no box of it passes; a person should box it "
            "(labelsift export review), or export with --keep-partial",
            classes[missing[0]],
        )
        return False
    for class_id in missing:
        summary.warn(
            source,
            "label_without_boxes",
            "selected for this label but it has no usable box here; exported without it",
            classes[class_id],
        )
    return True


def count_detection(summary: ExportSummary, tally: Tally) -> None:
    """Count an image once it has been written."""
    classes = summary.classes
    summary.count_export(tally.split)
    for class_id, boxes, human in tally.labels:
        summary.count_image(classes[class_id], tally.split, boxes, human=human)
