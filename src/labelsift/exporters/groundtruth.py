"""SageMaker Ground Truth output manifests (JSON Lines), the input Custom Labels imports.

`task`:
- `classification`: one attribute; an image selected for several labels gets the most confident
  (a person's accept counts as certain) and a warning.
- `multilabel`: `groundtruth/image-classification-multilabel` (Ground Truth's own type; Custom
  Labels does not import it, so it is not checked against Custom Labels).
- `per-label`: one classification attribute per label, `<attribute><class id>` (e.g. `label0`,
  `label1`): the shape Custom Labels accepts for several labels on one image.
- `boxes`: `groundtruth/object-detection`, integer pixels in the DISPLAYED frame (after EXIF
  orientation) with top-left origin, `image_size` of that frame, the complete `class-map`.

Confidence is 0-1 (1 where a person decided); `human-annotated` is "yes" where a person's verdict
decided, else "no"; `creation-date` is the verdict's time or the scan's, UTC ISO-8601 without
offset like Ground Truth writes; `job-name` is `labeling-job/<attribute>`. Class ids are the
export's one class order. Every written line is checked against the Custom Labels rules
(`validation.py`) while streaming; violations are reported with line numbers in the summary.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, NamedTuple

from labelsift.errors import UsageError
from labelsift.geometry import gt_box
from labelsift.groundtruth_types import CLASSIFICATION, DETECTION, MULTILABEL
from labelsift.select import Decision, LabelDecision, Selection, latest_verdict
from labelsift.storage import Storage, is_s3
from labelsift.views import RecordView

from .common import StorageLike, dump_json
from .detections import DetectionImage, Tally, count_detection, detection_images
from .naming import class_names
from .owned import OwnedOutput, TextSink, output_parts, refuse_if_nothing_in_s3
from .pipeline import PER_CORE, Parallel, staged
from .records import decisions, require_manifest
from .summary import ALL, DEFAULT_DETAIL_LIMIT, ExportSummary
from .validation import CustomLabelsChecker, LineCheck, attribute_problem, inspect_line

Task = Literal["classification", "multilabel", "per-label", "boxes"]
DEFAULT_ATTRIBUTE: dict[str, str] = {
    "classification": "class",
    "multilabel": "labels",
    "per-label": "label",
    "boxes": "bounding-box",
}


def gt_date(when: datetime) -> str:
    """UTC, ISO-8601, microseconds, no offset: `2026-11-29T10:00:00.000000`."""
    if when.utcoffset():  # aware and not UTC (a naive time is taken as UTC)
        when = when.astimezone(UTC)
    return when.isoformat(timespec="microseconds")[:26]  # without the offset, if any


def _decided_at(record: RecordView, decision: LabelDecision) -> datetime:
    verdict = latest_verdict(record["review"], decision.query) if decision.human else None
    return verdict.at if verdict is not None else record["scanned_at"]


def _confidence(decision: LabelDecision) -> float:
    return 1.0 if decision.human else round(decision.confidence / 100.0, 4)


def _yes_no(human: bool) -> str:
    return "yes" if human else "no"


def export_groundtruth(
    manifest_uri: str,
    dest: str,
    selection: Selection,
    *,
    task: Task = "boxes",
    attribute: str | None = None,
    names: Mapping[str, str] | None = None,
    check: bool = True,
    test_dataset: bool = False,
    overwrite: bool = False,
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
    parallel: Parallel = PER_CORE,
    storage: StorageLike | None = None,
) -> ExportSummary:
    """Write a Ground Truth output manifest of `selection` to `dest`; records whose source is not
    `s3://` are skipped (`not_s3`): Ground Truth and Custom Labels read images from S3.

    Args:
        manifest_uri: the manifest to read (a file, or a folder or `s3://` prefix of shards).
        dest: the output file, a local path or `s3://bucket/key`.
        selection: the labels to export and how records are selected.
        task: `classification`, `multilabel`, `per-label` or `boxes` (see the module).
        attribute: the label attribute's name (default: the task's, e.g. `bounding-box`).
        names: renames classes, query label -> class name.
        check: check every line against the Custom Labels rules (not for `multilabel`).
        test_dataset: check the rules of a test dataset too (images per label).
        overwrite: replace an earlier export's `dest`; a file labelsift did not write never.
        detail_limit: how many skipped images, warnings and violations the summary lists.
        parallel: how the per-record work is spread over processes.
        storage: reads and writes `s3://` (default: a new `Storage`).

    Returns:
        The counts and reasons of what was written or left out, and the rules lines break.

    Raises:
        UsageError: an unknown `task`, an attribute name Ground Truth refuses, a bad `names`.
        FileNotFoundError: no manifest at `manifest_uri`.
        CannotProceed: no selected record is in S3 (nothing is written), or `dest` cannot be
            written or holds a file labelsift did not write.
    """
    attr, classes = _attribute_and_classes(task, attribute, selection, names)
    fmt = f"groundtruth-{task}"
    summary = ExportSummary.start(fmt, manifest_uri, dest, classes, detail_limit=detail_limit)
    require_manifest(manifest_uri)
    checker = CustomLabelsChecker(test_dataset=test_dataset) if check and task != "multilabel" else None
    checking = checker is not None
    stage = partial(
        groundtruth_lines, selection=selection, task=task, attr=attr, classes=classes, check=checking
    )
    folder, name = output_parts(dest)
    with OwnedOutput(
        folder, storage or Storage(), fmt=fmt, manifest=manifest_uri, overwrite=overwrite, single=name
    ) as out:
        lines = staged(manifest_uri, selection, summary, stage, parallel)
        _write_manifest(out, name, lines, summary, checker)
        out.commit(summary)
    return summary


def _attribute_and_classes(
    task: Task, attribute: str | None, selection: Selection, names: Mapping[str, str] | None
) -> tuple[str, list[str]]:
    """The label attribute's name (the task's default unless given) and the class names, once
    the task, the names and every attribute name the export makes are valid."""
    if task not in DEFAULT_ATTRIBUTE:
        raise UsageError(f"--task {task!r}: choose one of {', '.join(DEFAULT_ATTRIBUTE)}.")
    attr = attribute if attribute is not None else DEFAULT_ATTRIBUTE[task]
    classes = class_names(selection, names)
    for name in [f"{attr}{i}" for i in range(len(classes))] if task == "per-label" else [attr]:
        why = attribute_problem(name)
        if why is not None:
            raise UsageError(f"--attribute {name!r}: {why}")
    return attr, classes


def _write_manifest(
    out: OwnedOutput,
    name: str,
    lines: Iterator[GroundTruthLine],
    summary: ExportSummary,
    checker: CustomLabelsChecker | None,
) -> None:
    """Write every line to the output file `name`, checking each and then the whole file."""
    with out.open_text(name) as stream:
        for line in lines:
            _write_line(out, stream, line, summary, checker)
        refuse_if_nothing_in_s3(summary, "Ground Truth")
    summary.files_written = 1
    if checker is not None:
        for violation in checker.finish():
            summary.violate(violation.line, violation.rule, violation.message)
        summary.invalid_lines = checker.invalid_lines


def _write_line(
    out: OwnedOutput,
    stream: TextSink,
    line: GroundTruthLine,
    summary: ExportSummary,
    checker: CustomLabelsChecker | None,
) -> None:
    """Write one line, report the rules it breaks, and count it."""
    stream.write(line.text)
    summary.lines_written += 1
    if checker is not None and line.check is not None:
        for violation in checker.add(summary.lines_written, line.check, line.size, line.source):
            summary.violate(violation.line, violation.rule, violation.message, violation.source)
    out.note_source(line.source)
    count_detection(summary, line.tally)


class GroundTruthLine(NamedTuple):
    """One output line, ready to write, with its rule check (None when not checking)."""

    source: str
    text: str  # JSON and its newline
    size: int  # bytes
    check: LineCheck | None
    tally: Tally


def groundtruth_lines(
    records: Iterator[RecordView | None],
    summary: ExportSummary,
    *,
    selection: Selection,
    task: Task,
    attr: str,
    classes: list[str],
    check: bool,
) -> Iterator[GroundTruthLine]:
    """The export's stage (see `pipeline`): records -> Ground Truth lines."""
    decided = _in_s3(decisions(records, selection, summary), summary)
    lines: Iterator[tuple[str, dict[str, Any], Tally]]
    if task == "boxes":
        class_map = {str(i): name for i, name in enumerate(classes)}  # every class, on every line
        boxes_line = partial(
            _boxes_line, attr=attr, meta=f"{attr}-metadata", job=f"labeling-job/{attr}", class_map=class_map
        )
        lines = map(boxes_line, detection_images(decided, summary, val_fraction=None))
    else:
        lines = _classification_lines(decided, summary, task, attr, classes)
    for source, line, tally in lines:
        text = dump_json(line) + "\n"
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        yield GroundTruthLine(source, text, size, inspect_line(line) if check else None, tally)


def _in_s3(decided: Iterator[Decision], summary: ExportSummary) -> Iterator[Decision]:
    for decision in decided:
        source = decision.record["source"]
        if is_s3(source):
            yield decision
        elif any(d.selected for d in decision.labels):
            summary.skip(source, "not_s3", NOT_S3)


NOT_S3 = (
    "Ground Truth reads images from S3 only: scan the images from an s3:// source "
    "(or upload them and scan that)"
)


def _boxes_line(
    image: DetectionImage, *, attr: str, meta: str, job: str, class_map: dict[str, str]
) -> tuple[str, dict[str, Any], Tally]:
    record = image.record
    annotations = []
    objects = []
    for obj in image.objects:
        left, top, width, height = gt_box(obj.box)
        annotations.append(
            {"class_id": obj.class_id, "left": left, "top": top, "width": width, "height": height}
        )
        objects.append({"confidence": 1.0 if obj.human else round(obj.confidence / 100.0, 4)})
    human = image.human
    decided_at = max(_decided_at(record, d) for _, d in image.labels) if human else record["scanned_at"]
    line = {
        "source-ref": record["source"],
        attr: {
            "image_size": [{"width": image.width, "height": image.height, "depth": 3}],
            "annotations": annotations,
        },
        meta: {
            "objects": objects,
            "class-map": class_map,
            "type": DETECTION,
            "human-annotated": _yes_no(human),
            "creation-date": gt_date(decided_at),
            "job-name": job,
        },
    }
    return record["source"], line, image.tally


def _classification_lines(
    decided: Iterator[Decision], summary: ExportSummary, task: Task, attr: str, classes: list[str]
) -> Iterator[tuple[str, dict[str, Any], Tally]]:
    for decision in decided:
        chosen = [(i, d) for i, d in enumerate(decision.labels) if d.selected]
        if not chosen:
            continue
        record = decision.record
        source = record["source"]
        line: dict[str, Any] = {"source-ref": source}
        if task == "classification":
            if len(chosen) > 1:
                summary.warn(
                    source,
                    "several_labels",
                    f"selected for {[classes[i] for i, _ in chosen]}; single-label classification "
                    "keeps the most confident",
                )
                chosen = [max(chosen, key=lambda c: (c[1].human, c[1].confidence))]
            i, d = chosen[0]
            line[attr] = i
            line[f"{attr}-metadata"] = _class_metadata(classes[i], d, record, attr)
        elif task == "per-label":
            for i, d in chosen:
                line[f"{attr}{i}"] = i
                line[f"{attr}{i}-metadata"] = _class_metadata(classes[i], d, record, f"{attr}{i}")
        else:
            line[attr] = [i for i, _ in chosen]
            line[f"{attr}-metadata"] = {
                "class-map": {str(i): classes[i] for i, _ in chosen},
                "confidence-map": {str(i): _confidence(d) for i, d in chosen},
                "type": MULTILABEL,
                "job-name": f"labeling-job/{attr}",
                "human-annotated": _yes_no(any(d.human for _, d in chosen)),
                "creation-date": gt_date(max(_decided_at(record, d) for _, d in chosen)),
            }
        yield source, line, Tally(ALL, tuple((i, 0, d.human) for i, d in chosen))


def _class_metadata(name: str, decision: LabelDecision, record: RecordView, attr: str) -> dict[str, Any]:
    return {
        "class-name": name,
        "confidence": _confidence(decision),
        "type": CLASSIFICATION,
        "job-name": f"labeling-job/{attr}",
        "human-annotated": _yes_no(decision.human),
        "creation-date": gt_date(_decided_at(record, decision)),
    }
