"""Import people's boxes from a Label Studio JSON export as verdicts.

The export (Label Studio's "JSON" format) is one JSON list of tasks:
`{"id", "data": {"image", "labelsift_source", "labelsift_predicted"}, "annotations": [{"id",
"result": [...], "was_cancelled", "created_at", "updated_at", ...}], ...}`. Per task, the newest
annotation that was not cancelled (skipped) decides, per class:

- the class has `rectanglelabels` boxes in it: accepted, with those boxes (percent of the image ->
  ratios), which then replace the detector's in every later export;
- the class was predicted on the task (`data.labelsift_predicted`, written by `export
  label-studio`; else the classes of the task's expanded `predictions`) but a person left it out:
  rejected.

With `labels`, only those classes are decided, and each one not drawn is rejected. A box a
person rotated becomes the smallest upright box around it (counted). The image a task names is
`data.labelsift_source`, else `data.image` when it is an `s3://` URI.

The export is read twice, streaming (never whole in memory): first to check it is one JSON list
of tasks (a broken file stops the import before any verdict is written, naming the task), then to
append the verdicts under the manifest's lock. A task that cannot be used (no source, a rotated
image view, a box that is not one) is reported by its position and id and none of its verdicts is
written; the other tasks are imported.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import smart_open
from pydantic import ValidationError

from labelsift import uri as uri_module
from labelsift.errors import BadManifest, UsageError
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
from labelsift.select import label_key
from labelsift.whole_output import refuse_output_among_inputs

MAX_LISTED = 1000
_CHUNK = 1 << 16
_WHITESPACE = " \t\n\r"


class LabelStudioExportError(BadManifest):
    """The Label Studio export is not one JSON list of tasks."""


class TaskError(ValueError):
    """One task of the export that cannot be used."""


@dataclass
class LabelStudioImportSummary:
    """What an import did. Every task is accounted for in exactly one of the counts."""

    manifest: str
    export: str
    tasks: int = 0
    imported_tasks: int = 0  # tasks that gave at least one verdict
    verdicts: int = 0
    accepted: int = 0
    rejected: int = 0
    corrected_boxes: int = 0  # boxes of accepted verdicts (people's own)
    rotated_boxes: int = 0  # rotated boxes made upright
    unannotated: int = 0  # tasks nobody annotated
    cancelled: int = 0  # tasks whose every annotation was cancelled (skipped)
    empty: int = 0  # tasks whose annotation decides no class
    unknown_sources: int = 0
    problem_count: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)  # (task, why)
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (task, source)

    def _problem(self, task: str, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED:
            self.problems.append((task, message))

    def _unknown(self, task: str, source: str) -> None:
        self.unknown_sources += 1
        if len(self.unknown) < MAX_LISTED:
            self.unknown.append((task, source))

    def report(self, limit: int = 10) -> str:
        out = [
            f"{self.export}: {self.tasks} task(s) read; {self.verdicts} verdict(s) appended to "
            f"{self.manifest} ({self.accepted} accepted with {self.corrected_boxes} box(es) drawn or "
            f"kept by people, {self.rejected} rejected) from {self.imported_tasks} task(s)."
        ]
        if self.unannotated:
            out.append(f"{self.unannotated} task(s) have no annotation yet; skipped.")
        if self.cancelled:
            out.append(f"{self.cancelled} task(s) were only skipped (cancelled) by people; skipped.")
        if self.empty:
            out.append(f"{self.empty} task(s) say nothing about the label(s); skipped.")
        if self.rotated_boxes:
            out.append(f"{self.rotated_boxes} rotated box(es) became the upright box around them.")
        if self.unknown_sources:
            out.append(f"{self.unknown_sources} task(s) name an image that is not in the manifest:")
            out += [f"  {task}: {source}" for task, source in self.unknown[:limit]]
        if self.problem_count:
            out.append(f"{self.problem_count} task(s) could not be used (none of their verdicts written):")
            out += [f"  {task}: {message}" for task, message in self.problems[:limit]]
        return "\n".join(out)


@dataclass(frozen=True, slots=True)
class _Answer:
    label: str
    accepted: bool
    instances: tuple[Instance, ...] | None


@dataclass(frozen=True, slots=True)
class _Decided:
    source: str
    answers: list[_Answer]
    at: datetime | None
    rotated: int


# -- reading the export, streaming -------------------------------------------------------------------


def _open(uri: str) -> IO[str]:
    location = uri_module.parse(uri, what="Label Studio export")
    if isinstance(location, uri_module.LocalLocation):
        if location.path.is_dir():
            raise ManifestUnreadable(f"{uri} is a folder: name the Label Studio JSON export file in it.")
        refuse_special_file(uri, location.path)
    stream: IO[str] = smart_open.open(
        str(Path(uri).expanduser()) if is_local(uri) else uri, "r", encoding="utf-8", errors="replace"
    )
    return stream


def iter_json_list(stream: IO[str], name: str) -> Iterator[Any]:
    """The items of one JSON list, read from `stream` a chunk at a time (one item in memory)."""
    decoder = json.JSONDecoder()
    buffer = stream.read(_CHUNK).lstrip(_WHITESPACE)
    if not buffer.startswith("["):
        raise LabelStudioExportError(
            f"{name}: not a Label Studio JSON export (it must be a JSON list of tasks, '[{{...}}, ...]'). "
            "Export the project as JSON (not JSON_MIN, CSV or COCO) and import that file."
        )
    pos, count, ended = 1, 0, False
    while True:
        buffer, pos, ended = _skip(stream, buffer, pos, ended)
        if pos < len(buffer) and buffer[pos] == "]":
            _expect_end(stream, buffer[pos + 1 :], name)
            return
        if count:
            if pos >= len(buffer) or buffer[pos] != ",":
                raise _broken(name, count, "expected ',' or ']' after it")
            buffer, pos, ended = _skip(stream, buffer, pos + 1, ended)
        item, buffer, pos, ended = _decode(decoder, stream, buffer, pos, ended, name, count)
        count += 1
        yield item


def _skip(stream: IO[str], buffer: str, pos: int, ended: bool) -> tuple[str, int, bool]:
    """Past whitespace, reading more when the buffer runs out; the buffer is cut to `pos`."""
    while True:
        while pos < len(buffer) and buffer[pos] in _WHITESPACE:
            pos += 1
        if pos < len(buffer) or ended:
            return buffer[pos:], 0, ended
        more = stream.read(_CHUNK)
        buffer, pos, ended = more, 0, not more


def _decode(
    decoder: json.JSONDecoder, stream: IO[str], buffer: str, pos: int, ended: bool, name: str, count: int
) -> tuple[Any, str, int, bool]:
    """One item at `pos`; an item the buffer holds only part of is retried with twice the text."""
    while True:
        try:
            item, end = decoder.raw_decode(buffer, pos)
        except json.JSONDecodeError as exc:
            if ended:
                raise _broken(name, count + 1, f"not JSON ({exc.msg})", before=False) from None
        except RecursionError:
            raise _broken(name, count + 1, "JSON nested too deeply to read", before=False) from None
        else:
            if end < len(buffer) or ended:
                return item, buffer[end:], 0, ended
        more = stream.read(max(_CHUNK, len(buffer)))
        buffer, ended = buffer[pos:] + more, not more
        pos = 0


def _expect_end(stream: IO[str], rest: str, name: str) -> None:
    while True:
        if rest.strip(_WHITESPACE):
            raise LabelStudioExportError(f"{name}: text after the end of the list of tasks; is it whole?")
        rest = stream.read(_CHUNK)
        if not rest:
            return


def _broken(name: str, task: int, why: str, *, before: bool = True) -> LabelStudioExportError:
    where = f"after task {task}" if before else f"task {task}"
    return LabelStudioExportError(
        f"{name}: {where}: {why}. The file is not a whole Label Studio JSON export (cut short, or "
        "edited?); export the project again. No verdict was written."
    )


def iter_tasks(uri: str) -> Iterator[Any]:
    with _open(uri) as stream:
        yield from iter_json_list(stream, uri)


# -- one task ---------------------------------------------------------------------------------------


def _when(annotation: dict[str, Any]) -> datetime | None:
    for key in ("updated_at", "created_at"):
        value = annotation.get(key)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    return None


def newest_annotation(task: dict[str, Any]) -> dict[str, Any] | None:
    """The newest annotation not cancelled (by `updated_at`, then `created_at`, then id)."""
    annotations = task.get("annotations")
    if not isinstance(annotations, list):
        raise TaskError("no 'annotations' list: export the project as JSON (JSON_MIN and CSV leave them out)")
    kept = [a for a in annotations if isinstance(a, dict) and not a.get("was_cancelled")]
    if not kept:
        return None
    oldest = datetime.min.replace(tzinfo=UTC)

    def order(annotation: dict[str, Any]) -> tuple[datetime, int]:
        ident = annotation.get("id")
        return _when(annotation) or oldest, ident if isinstance(ident, int) else -1

    return max(kept, key=order)


def task_source(task: dict[str, Any]) -> str:
    data = task.get("data")
    if not isinstance(data, dict):
        raise TaskError(
            "no 'data' object, so not a task of a JSON export: export the project as JSON "
            "(JSON_MIN and CSV flatten the tasks and leave out what this import needs)"
        )
    source = data.get("labelsift_source")
    if isinstance(source, str) and source:
        return source
    image = data.get("image")
    if isinstance(image, str) and image.startswith("s3://"):
        return image
    raise TaskError(
        "no data.labelsift_source (and data.image is not an s3:// URI): the task was not made by "
        "`labelsift export label-studio`, so the image it shows is not known"
    )


def predicted_classes(task: dict[str, Any]) -> list[str]:
    """Classes the task was pre-annotated with: `data.labelsift_predicted`, else the labels of its
    expanded predictions (Label Studio exports predictions as ids unless asked)."""
    data = task.get("data")
    named = data.get("labelsift_predicted") if isinstance(data, dict) else None
    if isinstance(named, list):
        return [n for n in named if isinstance(n, str)]
    found: list[str] = []
    for prediction in task.get("predictions") or []:
        if isinstance(prediction, dict):
            for result in prediction.get("result") or []:
                found += _labels_of(result)
    return list(dict.fromkeys(found))


def _labels_of(result: Any) -> list[str]:
    if not isinstance(result, dict) or result.get("type") != "rectanglelabels":
        return []
    value = result.get("value")
    labels = value.get("rectanglelabels") if isinstance(value, dict) else None
    return [n for n in labels if isinstance(n, str)] if isinstance(labels, list) else []


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TaskError(f"{where} must be a number")
    return float(value)


def box_of(result: dict[str, Any], where: str) -> tuple[Instance, bool]:
    """A `rectanglelabels` result -> (a ratio box, whether it was rotated)."""
    rotation_of_image = result.get("image_rotation", 0)
    if rotation_of_image not in (0, None):
        raise TaskError(
            f"{where}: drawn on the image turned by {rotation_of_image} degrees in Label Studio; "
            "turn it back (image_rotation 0) and save the annotation again"
        )
    value = result.get("value")
    if not isinstance(value, dict):
        raise TaskError(f"{where}: no 'value'")
    x, y = _number(f"{where}.value.x", value.get("x")), _number(f"{where}.value.y", value.get("y"))
    w = _number(f"{where}.value.width", value.get("width"))
    h = _number(f"{where}.value.height", value.get("height"))
    rotation = _number(f"{where}.value.rotation", value.get("rotation", 0) or 0)
    rotated = rotation % 360 != 0
    if rotated:  # Label Studio turns a box about its top-left corner, in pixels
        x, y, w, h = _upright((x, y, w, h), rotation, _size(result, where))
    left, top = max(x, 0.0), max(y, 0.0)
    right, bottom = min(x + w, 100.0), min(y + h, 100.0)
    if right <= left or bottom <= top:
        raise TaskError(f"{where}: the box has no area inside the image ({x:g}, {y:g}, {w:g} x {h:g} %)")
    try:
        box = Instance(
            left=left / 100.0,
            top=top / 100.0,
            width=(right - left) / 100.0,
            height=(bottom - top) / 100.0,
            confidence=100.0,
        )
    except ValidationError as exc:  # pragma: no cover - clipped to the image above
        raise TaskError(f"{where}: not a box inside the image ({exc.errors()[0]['msg']})") from None
    return box, rotated


def _size(result: dict[str, Any], where: str) -> tuple[float, float]:
    width, height = result.get("original_width"), result.get("original_height")
    if not (isinstance(width, int | float) and isinstance(height, int | float) and width > 0 and height > 0):
        raise TaskError(f"{where}: a rotated box needs original_width and original_height")
    return float(width), float(height)


def _upright(
    box: tuple[float, float, float, float], degrees: float, size: tuple[float, float]
) -> tuple[float, float, float, float]:
    """The upright box (percent) around a box (percent) turned by `degrees` clockwise about its
    top-left corner; the turn is in pixels, where the image's sides differ."""
    sx, sy = size[0] / 100.0, size[1] / 100.0
    x, y, w, h = box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    corners = ((0.0, 0.0), (w, 0.0), (w, h), (0.0, h))
    xs = [x + dx * cos - dy * sin for dx, dy in corners]
    ys = [y + dx * sin + dy * cos for dx, dy in corners]
    return min(xs) / sx, min(ys) / sy, (max(xs) - min(xs)) / sx, (max(ys) - min(ys)) / sy


def decide_task(task: Any, labels: list[str] | None) -> _Decided | None:
    """The verdicts one task gives (None: nobody annotated it, or only cancelled)."""
    if not isinstance(task, dict):
        raise TaskError("not a JSON object")
    source = task_source(task)
    annotation = newest_annotation(task)
    if annotation is None:
        return None
    results = annotation.get("result")
    if not isinstance(results, list):
        raise TaskError(f"annotation {annotation.get('id')}: 'result' must be a list")
    boxes: dict[str, list[Instance]] = {}
    rotated = 0
    for i, result in enumerate(results):
        names = _labels_of(result)
        if not names:
            continue  # another control (choices, text ...): not a box
        box, turned = box_of(result, f"annotation {annotation.get('id')} result[{i}]")
        rotated += turned
        for name in names:
            boxes.setdefault(name, []).append(box)
    if labels is not None:
        wanted = {label_key(label): label for label in labels}
        mine: dict[str, list[Instance]] = {}
        for name, found in boxes.items():
            if label_key(name) in wanted:
                mine.setdefault(wanted[label_key(name)], []).extend(found)
        classes = list(labels)
        boxes = mine
    else:
        classes = list(dict.fromkeys([*predicted_classes(task), *boxes]))
    answers = [
        _Answer(name, True, tuple(boxes[name])) if name in boxes else _Answer(name, False, None)
        for name in classes
    ]
    return _Decided(source, answers, _when(annotation), rotated)


def _task_name(position: int, task: Any) -> str:
    ident = task.get("id") if isinstance(task, dict) else None
    return f"task {position}" + (f" (id {ident})" if isinstance(ident, int | str) else "")


def import_label_studio(
    manifest_path: str | Path,
    export_uri: str,
    *,
    labels: list[str] | None = None,
    who: str = "label-studio",
) -> LabelStudioImportSummary:
    """Append people's verdicts from a Label Studio JSON export to the (local) manifest."""
    manifest = str(manifest_path)
    if labels is not None and not all(label.strip() for label in labels):
        raise UsageError("--label: give a label name, or leave it out")
    require_existing(local_manifest(manifest, purpose="import-review"))
    refuse_output_among_inputs([export_uri], manifest, what="manifest the verdicts go to")
    for _ in iter_tasks(export_uri):  # the whole file is one list of tasks, before anything is written
        pass
    summary = LabelStudioImportSummary(manifest=manifest, export=export_uri)
    with ManifestWriter(manifest, purpose="import-review") as writer, build_index(manifest) as index:
        for position, task in enumerate(iter_tasks(export_uri), start=1):
            summary.tasks += 1
            name = _task_name(position, task)
            try:
                decided = decide_task(task, labels)
            except TaskError as exc:
                summary._problem(name, str(exc))
                continue
            if decided is None:
                _count_unanswered(summary, task)
                continue
            if index.get(decided.source) is None:
                summary._unknown(name, decided.source)
                continue
            if not decided.answers:
                summary.empty += 1
                continue
            _append(writer, summary, decided, who)
    return summary


def _count_unanswered(summary: LabelStudioImportSummary, task: dict[str, Any]) -> None:
    if any(isinstance(a, dict) and a.get("was_cancelled") for a in task.get("annotations") or []):
        summary.cancelled += 1
    else:
        summary.unannotated += 1


def _append(writer: ManifestWriter, summary: LabelStudioImportSummary, decided: _Decided, who: str) -> None:
    at = decided.at or utc_now()
    entries = [
        VerdictEntry(
            source=decided.source,
            verdict=Verdict(
                label=answer.label,
                accepted=answer.accepted,
                who=who,
                at=at,
                instances=list(answer.instances) if answer.instances is not None else None,
            ),
        )
        for answer in decided.answers
    ]
    for entry in entries:
        writer.append(entry)
        summary.verdicts += 1
        if entry.verdict.accepted:
            summary.accepted += 1
            summary.corrected_boxes += len(entry.verdict.instances or ())
        else:
            summary.rejected += 1
    summary.rotated_boxes += decided.rotated
    summary.imported_tasks += 1
