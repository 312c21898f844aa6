"""What Rekognition Custom Labels accepts in a Ground Truth manifest, checked line by line.

`CustomLabelsChecker` takes each manifest line (parsed, with its size in bytes) as it is written or
read, and reports every broken rule with the line number; `finish()` adds the whole-file rules
(line 0). It keeps only counters and the set of class names, so it streams. Rules (ids as reported):

- `source-ref`: present and an `s3://bucket/key` URI.
- `attribute-name`: a label attribute must not contain `-metadata` nor end in `-ref`;
  `metadata`: every attribute has its `<attr>-metadata` object (and no orphan metadata).
- `line-type`: only `groundtruth/image-classification` and `groundtruth/object-detection` lines
  (several labels on one image = one classification attribute per label, not the multilabel type).
- `classification-metadata`: `class-name`, `confidence` (0-1), `type`, `human-annotated`
  (`yes`/`no`), `creation-date` (ISO-8601).
- `detection-format`: `image_size` a one-element list with positive width/height, `annotations`
  with integer class_id/left/top/width/height, as many `objects` as `annotations` with confidence
  0-1, `class-map` containing every `class_id` used, `human-annotated`, `creation-date`.
- `box-inside-image`: no negative or off-frame box; `box-too-small`: each side of a box must be
  larger than 1 px after the image is scaled so its longest side is at most 1280 px.
- `labels-per-image` (<= 50), `boxes-per-image` (<= 50).
- Whole file: `manifest-lines` (<= 250,000), `manifest-size` (<= 1 GB), `label-count` (2-250 for
  classification, >= 1 for detection), `test-images-per-label` (<= 1,000, test datasets only),
  `invalid-lines` (import fails when more than 20 % of the lines are invalid).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from labelsift.groundtruth_types import CLASSIFICATION, DETECTION
from labelsift.service_limits import MANIFEST_MAX_BOXES_PER_IMAGE as MAX_BOXES_PER_IMAGE
from labelsift.service_limits import MANIFEST_MAX_BYTES as MAX_BYTES
from labelsift.service_limits import MANIFEST_MAX_CLASSIFICATION_LABELS as MAX_CLASSIFICATION_LABELS
from labelsift.service_limits import MANIFEST_MAX_INVALID_SHARE as MAX_INVALID_SHARE
from labelsift.service_limits import MANIFEST_MAX_LABELS_PER_IMAGE as MAX_LABELS_PER_IMAGE
from labelsift.service_limits import MANIFEST_MAX_LINES as MAX_LINES
from labelsift.service_limits import MANIFEST_MAX_TEST_IMAGES_PER_LABEL as MAX_TEST_IMAGES_PER_LABEL
from labelsift.service_limits import MANIFEST_MIN_CLASSIFICATION_LABELS as MIN_CLASSIFICATION_LABELS
from labelsift.service_limits import MANIFEST_SCALED_LONGEST_SIDE as SCALED_LONGEST_SIDE

from .summary import Violation

_BOX_KEYS = ("class_id", "left", "top", "width", "height")


def attribute_problem(name: str) -> str | None:
    """Why `name` cannot be a label attribute name, or None."""
    if not name:
        return "an attribute name is empty"
    if "-metadata" in name:
        return f"attribute {name!r} contains '-metadata'"
    if name.endswith("-ref"):
        return f"attribute {name!r} ends in '-ref'"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return type(value) is float or (isinstance(value, int | float) and not isinstance(value, bool))


def _in_unit(value: Any) -> bool:
    """A number within 0-1 (a Ground Truth confidence)."""
    return _is_number(value) and 0.0 <= float(value) <= 1.0


def _is_iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _common_metadata(meta: dict[str, Any], problems: list[tuple[str, str]], rule: str) -> None:
    if meta.get("human-annotated") not in ("yes", "no"):
        problems.append((rule, "'human-annotated' must be 'yes' or 'no'"))
    if not _is_iso(meta.get("creation-date")):
        problems.append((rule, "'creation-date' must be an ISO-8601 date"))


class LineCheck(NamedTuple):
    """What one line breaks, and what it holds that the whole-file rules count."""

    problems: tuple[tuple[str, str], ...]  # (rule, message)
    labels: frozenset[str]
    kinds: tuple[str, ...]  # the type of each label attribute


def inspect_line(line: dict[str, Any]) -> LineCheck:
    """The per-line rules, on their own (no counting): a pure function of the line."""
    problems: list[tuple[str, str]] = []
    kinds: list[str] = []
    source = line.get("source-ref")
    if not isinstance(source, str) or not source.startswith("s3://") or "/" not in source[5:].strip("/"):
        problems.append(("source-ref", f"'source-ref' must be an s3://bucket/key URI, got {source!r}"))
    attributes = [k for k in line if k != "source-ref" and not k.endswith("-metadata")]
    for key in line:
        if key.endswith("-metadata") and key[: -len("-metadata")] not in line:
            problems.append(("metadata", f"{key!r} has no attribute {key[: -len('-metadata')]!r}"))
    labels: set[str] = set()
    boxes = 0
    for attr in attributes:
        why = attribute_problem(attr)
        if why is not None:
            problems.append(("attribute-name", why))
        meta = line.get(f"{attr}-metadata")
        if not isinstance(meta, dict):
            problems.append(("metadata", f"attribute {attr!r} has no '{attr}-metadata' object"))
            continue
        kind = meta.get("type")
        kinds.append(str(kind))
        if kind == CLASSIFICATION:
            name = _classification(attr, line[attr], meta, problems)
            if name is not None:
                labels.add(name)
        elif kind == DETECTION:
            found, count = _detection(line[attr], meta, problems)
            labels |= found
            boxes += count
        else:
            problems.append(("line-type", f"attribute {attr!r}: type {kind!r} is not accepted"))
    if not attributes:
        problems.append(("metadata", "the line has no label attribute"))
    if len(labels) > MAX_LABELS_PER_IMAGE:
        problems.append(("labels-per-image", f"{len(labels)} labels (at most {MAX_LABELS_PER_IMAGE})"))
    if boxes > MAX_BOXES_PER_IMAGE:
        problems.append(("boxes-per-image", f"{boxes} boxes (at most {MAX_BOXES_PER_IMAGE})"))
    return LineCheck(tuple(problems), frozenset(labels), tuple(kinds))


def _classification(
    attr: str, value: Any, meta: dict[str, Any], problems: list[tuple[str, str]]
) -> str | None:
    rule = "classification-metadata"
    name = meta.get("class-name")
    if not isinstance(name, str) or not name:
        problems.append((rule, f"{attr!r}: 'class-name' is missing"))
        name = None
    confidence = meta.get("confidence")
    if not _in_unit(confidence):
        problems.append((rule, f"{attr!r}: 'confidence' must be a number within 0-1, got {confidence!r}"))
    if not _is_int(value):
        problems.append((rule, f"{attr!r}: the value must be an integer class id, got {value!r}"))
    _common_metadata(meta, problems, rule)
    return name


def _detection(value: Any, meta: dict[str, Any], problems: list[tuple[str, str]]) -> tuple[set[str], int]:
    rule = "detection-format"
    if not isinstance(value, dict):
        problems.append((rule, "the attribute must hold 'image_size' and 'annotations'"))
        return set(), 0
    size = _image_size(value.get("image_size"), problems)
    annotations = value.get("annotations")
    if not isinstance(annotations, list):
        problems.append((rule, "'annotations' must be a list"))
        return set(), 0
    _check_objects(meta.get("objects"), len(annotations), problems)
    class_map = meta.get("class-map")
    if not isinstance(class_map, dict):
        problems.append((rule, "'class-map' is missing"))
        class_map = {}
    _common_metadata(meta, problems, rule)
    return _check_boxes(annotations, class_map, size, problems), len(annotations)


def _image_size(size: Any, problems: list[tuple[str, str]]) -> tuple[float, float] | None:
    """(width, height) of a one-element `image_size` list with positive sides, or None (a problem)."""
    if (
        isinstance(size, list)
        and len(size) == 1
        and isinstance(size[0], dict)
        and _is_number(size[0].get("width"))
        and _is_number(size[0].get("height"))
        and size[0]["width"] > 0
        and size[0]["height"] > 0
    ):
        return float(size[0]["width"]), float(size[0]["height"])
    problems.append(("detection-format", "'image_size' must be a one-element list with width and height"))
    return None


def _check_objects(objects: Any, annotations: int, problems: list[tuple[str, str]]) -> None:
    """One `objects` entry per annotation, each with a confidence within 0-1."""
    rule = "detection-format"
    if not isinstance(objects, list) or len(objects) != annotations:
        problems.append((rule, "'objects' must have one entry per annotation"))
        return
    for obj in objects:
        confidence = obj.get("confidence") if isinstance(obj, dict) else None
        if not _in_unit(confidence):
            problems.append((rule, f"object confidence must be within 0-1, got {confidence!r}"))
            break


def _check_boxes(
    annotations: list[Any],
    class_map: dict[str, Any],
    size: tuple[float, float] | None,
    problems: list[tuple[str, str]],
) -> set[str]:
    """Each annotation's integer box, inside the image and not too small; the class names used."""
    rule = "detection-format"
    width, height = size if size is not None else (None, None)
    scale = 1.0
    if width is not None and height is not None:
        scale = min(1.0, SCALED_LONGEST_SIDE / max(width, height))
    labels: set[str] = set()
    for i, ann in enumerate(annotations):
        # type(...) is int: an integer and not a bool (the hot path of a boxes export)
        if not isinstance(ann, dict) or not all(type(ann.get(k)) is int for k in _BOX_KEYS):
            problems.append((rule, f"annotation {i}: needs integer {', '.join(_BOX_KEYS)}"))
            continue
        name = class_map.get(str(ann["class_id"]))
        if name is None:
            problems.append((rule, f"annotation {i}: class_id {ann['class_id']} is not in 'class-map'"))
        else:
            labels.add(str(name))
        left, top, w, h = ann["left"], ann["top"], ann["width"], ann["height"]
        if (
            left < 0
            or top < 0
            or w <= 0
            or h <= 0
            or (width is not None and left + w > width)
            or (height is not None and top + h > height)
        ):
            problems.append(("box-inside-image", f"annotation {i}: box {[left, top, w, h]} is off the image"))
        elif w * scale <= 1.0 or h * scale <= 1.0:
            problems.append(
                (
                    "box-too-small",
                    f"annotation {i}: {w}x{h} px is not larger than 1x1 px once the image is "
                    f"scaled by {scale:.4f} to a longest side of {SCALED_LONGEST_SIDE}",
                )
            )
    return labels


@dataclass
class CustomLabelsChecker:
    test_dataset: bool = False
    lines: int = 0
    bytes: int = 0
    invalid_lines: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    classes: set[str] = field(default_factory=set)
    images_per_class: Counter[str] = field(default_factory=Counter)

    def check(self, line_no: int, line: dict[str, Any], size: int) -> list[Violation]:
        """The rules this line breaks (empty when it is valid)."""
        source = line.get("source-ref")
        return self.add(line_no, inspect_line(line), size, source if isinstance(source, str) else None)

    def add(self, line_no: int, check: LineCheck, size: int, source: str | None) -> list[Violation]:
        """Count a line inspected elsewhere (`inspect_line`); its violations, numbered `line_no`."""
        self.lines += 1
        self.bytes += size
        kinds, per_class = self.kinds, self.images_per_class
        for kind in check.kinds:  # loops, not Counter.update: no Mapping check per line
            kinds[kind] += 1
        for label in check.labels:
            per_class[label] += 1
        self.classes |= check.labels
        if check.problems:
            self.invalid_lines += 1
        return [
            Violation(line=line_no, rule=rule, message=message, source=source)
            for rule, message in check.problems
        ]

    def finish(self) -> list[Violation]:
        """The whole-manifest rules, reported on line 0."""
        out: list[Violation] = []

        def add(rule: str, message: str) -> None:
            out.append(Violation(line=0, rule=rule, message=message))

        if self.lines > MAX_LINES:
            add("manifest-lines", f"{self.lines} lines (at most {MAX_LINES})")
        if self.bytes > MAX_BYTES:
            add("manifest-size", f"{self.bytes} bytes (at most {MAX_BYTES})")
        if self.kinds[CLASSIFICATION] and not (
            MIN_CLASSIFICATION_LABELS <= len(self.classes) <= MAX_CLASSIFICATION_LABELS
        ):
            add(
                "label-count",
                f"{len(self.classes)} labels; classification needs "
                f"{MIN_CLASSIFICATION_LABELS}-{MAX_CLASSIFICATION_LABELS}",
            )
        if self.kinds[DETECTION] and not self.classes:
            add("label-count", "no labels; object detection needs at least one")
        if self.test_dataset:
            for name, count in sorted(self.images_per_class.items()):
                if count > MAX_TEST_IMAGES_PER_LABEL:
                    add("test-images-per-label", f"{name!r}: {count} test images (at most 1000)")
        if self.lines and self.invalid_lines / self.lines > MAX_INVALID_SHARE:
            add(
                "invalid-lines",
                f"{self.invalid_lines} of {self.lines} lines are invalid (import fails above 20%)",
            )
        return out


def validate_lines(lines: Iterator[str], *, test_dataset: bool = False) -> list[Violation]:
    """Check an existing Ground Truth manifest's lines; a line that is not JSON is a violation too."""
    checker = CustomLabelsChecker(test_dataset=test_dataset)
    out: list[Violation] = []
    for line_no, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            checker.lines += 1
            checker.invalid_lines += 1
            out.append(Violation(line=line_no, rule="json", message=f"not JSON: {exc.msg}"))
            continue
        if not isinstance(value, dict):
            checker.lines += 1
            checker.invalid_lines += 1
            out.append(Violation(line=line_no, rule="json", message="a line must be a JSON object"))
            continue
        out.extend(checker.check(line_no, value, len(text.encode("utf-8")) + 1))
    return out + checker.finish()
