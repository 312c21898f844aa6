"""Import people's decisions from a SageMaker Ground Truth OUTPUT manifest as verdicts.

Each line of the output manifest is `{"source-ref": ..., "<attr>": value, "<attr>-metadata": {...}}`
(several attributes per line when jobs were chained). Supported task types (`metadata.type`):

- `groundtruth/image-classification`: `class-name` names the class. With `label`, the image is
  accepted when the class names the label and rejected otherwise; a yes/no-style class ("yes",
  "no", "true", "false", ...) is the answer about `label` itself. Without `label`, a yes/no class is
  the answer about the label named by the attribute, any other class is accepted as itself.
- `groundtruth/image-classification-multilabel`: the value lists class ids, `class-map` names them.
  With `label`: accepted when one of the chosen classes names it, else rejected. Without: every
  chosen class is accepted.
- `groundtruth/object-detection`: pixel boxes with `image_size`, converted to ratio `Instance`s
  carried on the verdict (people's corrected boxes, which replace the detector's in every later
  export). With `label`: accepted with the label's boxes, rejected when a person drew none of it.
  Without: every class drawn is accepted with its boxes, and every class the line's machine
  boxes predicted (an attribute with `"human-annotated": "no"`, such as labelsift's own
  `export groundtruth --task boxes` that an adjustment job started from) but a person left out is
  rejected. An adjustment job's `adjustment-status` ("adjusted" or "unadjusted") needs nothing
  else: its boxes are the person's either way.

Only human work becomes a verdict: attributes marked `"human-annotated": "no"` (Ground Truth's
automated labeling, or labelsift's own machine-label export read back) are counted and skipped
unless `include_machine=True`. Sources not in the manifest are counted and listed, and lines that
cannot be used are reported with their line numbers; nothing is dropped silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import smart_open
from pydantic import ValidationError

from labelsift import uri as uri_module
from labelsift.errors import UsageError
from labelsift.groundtruth_types import CLASSIFICATION, DETECTION, MULTILABEL
from labelsift.manifest import (
    ManifestUnreadable,
    ManifestWriter,
    build_index,
    is_local,
    local_manifest,
    refuse_special_file,
    require_existing,
)
from labelsift.models import Instance, Verdict, VerdictEntry, utc_now
from labelsift.whole_output import refuse_output_among_inputs

SUPPORTED_TYPES = (CLASSIFICATION, MULTILABEL, DETECTION)
YES = frozenset({"yes", "y", "true", "1", "positive", "present", "accept", "accepted"})
NO = frozenset({"no", "n", "false", "0", "negative", "absent", "reject", "rejected"})
MAX_LISTED = 1000  # problems and unknown sources kept for the report; all are counted


class GroundTruthError(ValueError):
    """One unusable attribute or line of a Ground Truth output manifest."""


@dataclass
class ImportSummary:
    """What an import did. Every line is accounted for in exactly one of the counts."""

    manifest: str
    gt_output: str
    lines: int = 0  # non-blank lines read
    imported_lines: int = 0  # lines that produced at least one verdict
    verdicts: int = 0
    accepted: int = 0
    rejected: int = 0
    unknown_sources: int = 0  # lines whose source-ref is not in the manifest
    machine_lines: int = 0  # lines with only machine labels (human-annotated: no), skipped
    empty_lines: int = 0  # lines a person answered with nothing about the label(s)
    problem_count: int = 0  # lines that could not be used
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line number, why), first MAX_LISTED
    unknown: list[tuple[int, str]] = field(
        default_factory=list
    )  # (line number, source-ref), first MAX_LISTED

    def _problem(self, line_no: int, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append((line_no, message))

    def _unknown(self, line_no: int, source: str) -> None:
        self.unknown_sources += 1
        if len(self.unknown) < MAX_LISTED:
            self.unknown.append((line_no, source))

    def report(self, limit: int = 10) -> str:
        """A few lines for people: counts, then the first problems and unknown sources."""
        out = [
            f"{self.gt_output}: {self.lines} line(s) read; {self.verdicts} verdict(s) appended to "
            f"{self.manifest} ({self.accepted} accepted, {self.rejected} rejected) from "
            f"{self.imported_lines} line(s)."
        ]
        if self.unknown_sources:
            out.append(
                f"{self.unknown_sources} line(s) name an image that is not in the manifest (not imported):"
            )
            out += [f"  line {n}: {source}" for n, source in self.unknown[:limit]]
        if self.machine_lines:
            out.append(
                f"{self.machine_lines} line(s) hold only machine labels (human-annotated: no); skipped."
            )
        if self.empty_lines:
            out.append(f"{self.empty_lines} line(s) say nothing about the label; skipped.")
        if self.problem_count:
            out.append(f"{self.problem_count} line(s) could not be used:")
            out += [f"  line {n}: {message}" for n, message in self.problems[:limit]]
        hidden = max(0, self.unknown_sources - limit) + max(0, self.problem_count - limit)
        if hidden:
            out.append(f"  … and {hidden} more.")
        return "\n".join(out)


@dataclass(frozen=True, slots=True)
class _Answer:
    label: str
    accepted: bool
    instances: tuple[Instance, ...] | None
    at: datetime | None


def _norm(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").split()).lower()


def _open(uri: str) -> IO[str]:
    location = uri_module.parse(uri, what="Ground Truth output")
    if isinstance(location, uri_module.LocalLocation):
        if location.path.is_dir():
            raise ManifestUnreadable(
                f"{uri} is a folder, not a Ground Truth output manifest. Name the output.manifest file in it."
            )
        refuse_special_file(uri, location.path)  # a FIFO would block, /dev/zero never end
    stream: IO[str] = smart_open.open(
        str(Path(uri).expanduser()) if is_local(uri) else uri, "r", encoding="utf-8", errors="replace"
    )
    return stream


def _lines(uri: str) -> Iterator[tuple[int, str]]:
    with _open(uri) as stream:
        for line_no, raw in enumerate(stream, start=1):
            text = raw.strip()
            if text:
                yield line_no, text


def _when(metadata: dict[str, Any]) -> datetime | None:
    value = metadata.get("creation-date")
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _class_map(attr: str, metadata: dict[str, Any]) -> dict[str, str]:
    value = metadata.get("class-map")
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise GroundTruthError(f"{attr}-metadata: 'class-map' must map class ids to names")
    return {str(k): v for k, v in value.items()}


def _classification(attr: str, metadata: dict[str, Any], label: str | None) -> list[_Answer]:
    name = metadata.get("class-name")
    if not isinstance(name, str) or not name.strip():
        raise GroundTruthError(f"{attr}-metadata: no 'class-name'")
    at = _when(metadata)
    answer = _norm(name)
    if answer in YES or answer in NO:
        return [_Answer(label if label is not None else attr, answer in YES, None, at)]
    if label is None:
        return [_Answer(name, True, None, at)]
    return [_Answer(label, answer == _norm(label), None, at)]


def _multilabel(attr: str, value: Any, metadata: dict[str, Any], label: str | None) -> list[_Answer]:
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise GroundTruthError(f"{attr}: a multi-label answer must be a list of class ids")
    names = _class_map(attr, metadata)
    missing = [v for v in value if str(v) not in names]
    if missing:
        raise GroundTruthError(f"{attr}-metadata: class id(s) {missing} missing from 'class-map'")
    chosen = list(dict.fromkeys(names[str(v)] for v in value))
    at = _when(metadata)
    if label is None:
        return [_Answer(name, True, None, at) for name in chosen]
    return [_Answer(label, any(_norm(name) == _norm(label) for name in chosen), None, at)]


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GroundTruthError(f"{where} must be a number")
    return float(value)


def _detection(attr: str, value: Any, metadata: dict[str, Any], label: str | None) -> list[_Answer]:
    if not isinstance(value, dict):
        raise GroundTruthError(f"{attr}: a bounding-box answer must be an object")
    sizes = value.get("image_size")
    if not isinstance(sizes, list) or not sizes or not isinstance(sizes[0], dict):
        raise GroundTruthError(f"{attr}: 'image_size' must be a one-element list of {{width, height}}")
    width = _number(f"{attr}.image_size.width", sizes[0].get("width"))
    height = _number(f"{attr}.image_size.height", sizes[0].get("height"))
    if width <= 0 or height <= 0:
        raise GroundTruthError(f"{attr}: 'image_size' must be positive")
    annotations = value.get("annotations")
    if not isinstance(annotations, list):
        raise GroundTruthError(f"{attr}: 'annotations' must be a list")
    names = _class_map(attr, metadata)
    _check_class_ids(attr, annotations, names)
    objects = metadata.get("objects")
    objects = objects if isinstance(objects, list) else []
    boxes: dict[str, list[Instance]] = {}
    for i, box in enumerate(annotations):
        where = f"{attr}.annotations[{i}]"
        if not isinstance(box, dict):
            raise GroundTruthError(f"{where} must be an object")
        class_id = str(box.get("class_id"))
        found = objects[i] if i < len(objects) and isinstance(objects[i], dict) else {}
        confidence = found.get("confidence", 1.0)
        confidence = (
            1.0 if isinstance(confidence, bool) or not isinstance(confidence, int | float) else confidence
        )
        try:
            instance = Instance(
                left=_number(f"{where}.left", box.get("left")) / width,
                top=_number(f"{where}.top", box.get("top")) / height,
                width=_number(f"{where}.width", box.get("width")) / width,
                height=_number(f"{where}.height", box.get("height")) / height,
                confidence=min(max(float(confidence), 0.0), 1.0) * 100.0,
            )
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise GroundTruthError(f"{where}: not a box inside the image ({problems})") from None
        boxes.setdefault(names[class_id], []).append(instance)
    at = _when(metadata)
    if label is None:
        return [_Answer(name, True, tuple(found_boxes), at) for name, found_boxes in boxes.items()]
    mine = [b for name, found_boxes in boxes.items() if _norm(name) == _norm(label) for b in found_boxes]
    return [_Answer(label, bool(mine), tuple(mine) if mine else None, at)]


def _check_class_ids(attr: str, annotations: list[Any], names: dict[str, str]) -> None:
    for i, box in enumerate(annotations):
        if not isinstance(box, dict):
            raise GroundTruthError(f"{attr}.annotations[{i}] must be an object")
        if str(box.get("class_id")) not in names:
            raise GroundTruthError(
                f"{attr}.annotations[{i}]: class_id {box.get('class_id')!r} missing from 'class-map'"
            )


def _predicted(attr: str, value: Any, metadata: dict[str, Any]) -> list[str]:
    """The classes a machine bounding-box attribute has boxes of (the predictions people adjusted)."""
    annotations = value.get("annotations") if isinstance(value, dict) else None
    if not isinstance(annotations, list):
        raise GroundTruthError(f"{attr}: 'annotations' must be a list")
    names = _class_map(attr, metadata)
    _check_class_ids(attr, annotations, names)
    return list(dict.fromkeys(names[str(box["class_id"])] for box in annotations))


def _left_out(answers: list[_Answer], predicted: list[str], at: datetime | None) -> list[_Answer]:
    """A rejection for each predicted class that people's boxes leave out."""
    drawn = {_norm(answer.label) for answer in answers}
    return [_Answer(name, False, None, at) for name in predicted if _norm(name) not in drawn]


def parse_line(
    text: str, label: str | None, *, include_machine: bool = False
) -> tuple[str, list[_Answer], bool]:
    """(source-ref, answers, had only machine labels) of one output-manifest line."""
    try:
        line = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GroundTruthError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise GroundTruthError("not an output line (JSON nested too deeply to read)") from None
    if not isinstance(line, dict):
        raise GroundTruthError("not a JSON object")
    source = line.get("source-ref")
    if not isinstance(source, str) or not source:
        raise GroundTruthError("no 'source-ref'")
    answers: list[_Answer] = []
    boxes: list[_Answer] = []  # people's bounding-box answers
    predicted: list[str] = []  # classes of the machine bounding-box attributes
    boxes_at: list[datetime | None] = []  # when people answered each bounding-box attribute
    attributes = 0
    machine = 0
    for key, metadata in line.items():
        if not key.endswith("-metadata") or not isinstance(metadata, dict):
            continue
        attr = key[: -len("-metadata")]
        kind = metadata.get("type")
        if attr not in line:
            reason = metadata.get("failure-reason")
            raise GroundTruthError(
                f"{attr}: no answer"
                + (f" (labeling failed: {reason})" if reason else " next to its metadata")
            )
        if kind not in SUPPORTED_TYPES:
            raise GroundTruthError(
                f"{attr}-metadata: type {kind!r} is not one of {', '.join(SUPPORTED_TYPES)}"
            )
        attributes += 1
        if str(metadata.get("human-annotated", "yes")).lower() == "no" and not include_machine:
            machine += 1
            if kind == DETECTION:
                predicted += _predicted(attr, line[attr], metadata)
            continue
        if kind == CLASSIFICATION:
            answers += _classification(attr, metadata, label)
        elif kind == MULTILABEL:
            answers += _multilabel(attr, line[attr], metadata, label)
        else:
            boxes += _detection(attr, line[attr], metadata, label)
            boxes_at.append(_when(metadata))
    if not attributes:
        raise GroundTruthError("no Ground Truth answer: expected '<attribute>' with '<attribute>-metadata'")
    if boxes_at and label is None:  # people answered with boxes (perhaps none at all)
        at = max((when for when in boxes_at if when is not None), default=None)
        boxes += _left_out(boxes, list(dict.fromkeys(predicted)), at)
    return source, answers + boxes, machine == attributes


def import_review(
    manifest_path: str | Path,
    gt_output_uri: str,
    *,
    label: str | None = None,
    who: str = "groundtruth",
    include_machine: bool = False,
) -> ImportSummary:
    """Append a verdict to the (local) manifest for every person's answer in a GT output manifest.

    Both files are streamed; the manifest's sources are looked up in an on-disk index. A verdict's
    time is the answer's `creation-date` when it has one.
    """
    manifest = str(manifest_path)
    if label is not None and not label.strip():
        raise UsageError("--label: give a label name, or leave it out")
    require_existing(local_manifest(manifest, purpose="import-review"))
    refuse_output_among_inputs([gt_output_uri], manifest, what="manifest the verdicts go to")
    summary = ImportSummary(manifest=manifest, gt_output=gt_output_uri)
    # the lock (and the repair of a torn last line) before the manifest is read
    with ManifestWriter(manifest, purpose="import-review") as writer, build_index(manifest) as index:
        for line_no, text in _lines(gt_output_uri):
            summary.lines += 1
            try:
                source, answers, machine_only = parse_line(text, label, include_machine=include_machine)
            except GroundTruthError as exc:
                summary._problem(line_no, str(exc))
                continue
            if index.get(source) is None:
                summary._unknown(line_no, source)
                continue
            if machine_only:
                summary.machine_lines += 1
                continue
            if not answers:
                summary.empty_lines += 1
                continue
            for answer in answers:
                verdict = Verdict(
                    label=answer.label,
                    accepted=answer.accepted,
                    who=who,
                    at=answer.at or utc_now(),
                    instances=list(answer.instances) if answer.instances is not None else None,
                )
                writer.append(VerdictEntry(source=source, verdict=verdict))
                summary.verdicts += 1
                if answer.accepted:
                    summary.accepted += 1
                else:
                    summary.rejected += 1
            summary.imported_lines += 1
    return summary
