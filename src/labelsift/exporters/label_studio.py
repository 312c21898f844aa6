"""Label Studio tasks with pre-annotations, and the labeling config they are made for.

`OUT.json` is a JSON list of tasks, one per image, in manifest order:

    {"data": {"image": URL, "labelsift_source": SOURCE, "labelsift_predicted": [class, ...]},
     "predictions": [{"model_version": "<detector> <model version>", "score": best / 100,
                      "result": [rectanglelabels results]}]}

Each result is `{id, from_name: "label", to_name: "image", type: "rectanglelabels",
original_width, original_height, image_rotation: 0, value: {x, y, width, height, rotation: 0,
rectanglelabels: [class]}, score}` with x/y/width/height in PERCENT of the image. `OUT.xml` (the
output's name with `.xml` for `.json`) is the labeling config with one `<Label>` per class in the
`--label` order and rotation turned off, so the tasks import with nothing to edit.

Frame: Label Studio shows an image as the browser does, with its EXIF orientation applied, and
measures `original_width`/`original_height` and the percentages on what it shows. The manifest's
size and boxes are in that same displayed frame, so they are written unchanged (no rotation).

Images: every image selected for a label, and (with `band`) every image held out in the band for
people, whose boxes at or above the band's low end are the predictions; an image selected for a
label without boxes still becomes a task (a person draws them). A person's earlier accept is a
prediction with score 1. `labelsift_predicted` names the classes predicted on the task: `import-review
--from label-studio` rejects those a person then left out. `image`: an `s3://` source as it is (for
Label Studio's S3 storage); a local file as `/data/local-files/?d=<path relative to
local_files_root>` (Label Studio's local files storage, `LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`);
local files without `local_files_root`, or outside it, are skipped (`not_served`).
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterable, Iterator
from dataclasses import replace
from functools import partial
from typing import Any, NamedTuple
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from labelsift.errors import CannotProceed, UsageError
from labelsift.geometry import DropReason, to_pixels
from labelsift.select import REVIEW, SELECTED, Decision, LabelDecision, Selection
from labelsift.storage import Storage, is_s3
from labelsift.views import InstanceView, RecordView

from .common import StorageLike, dump_json
from .detections import Tally, count_detection
from .naming import class_names, source_digest
from .owned import OwnedOutput, output_parts
from .pipeline import PER_CORE, Parallel, staged
from .records import UNSAFE_SOURCE, require_manifest, unsafe_source
from .summary import ALL, DEFAULT_DETAIL_LIMIT, ExportSummary

FROM_NAME = "label"
TO_NAME = "image"
NOT_SERVED = "not_served"
LOCAL_FILES_URL = "/data/local-files/?d="


def label_config(classes: list[str]) -> str:
    """The labeling config: an image and one rectangle label per class, in class order."""
    labels = "".join(f"    <Label value={quoteattr(name)}/>\n" for name in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" canRotate="false">\n'
        f"{labels}"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


def config_name(name: str) -> str:
    """`tasks.json` -> `tasks.xml`; any other name gets `.xml` added."""
    stem, ext = os.path.splitext(name)
    if ext.lower() == ".xml":
        raise UsageError(f"{name}: name the tasks file OUT.json; the labeling config is written beside it.")
    return (stem if ext.lower() == ".json" else name) + ".xml"


def local_files_url(source: str, root: str | None) -> str | None:
    """The URL Label Studio's local files storage serves `source` at, or None when it cannot."""
    if root is None:
        return None
    rel = posixpath.relpath(source, root)
    if rel == "." or rel.startswith("../") or rel == "..":
        return None
    return LOCAL_FILES_URL + quote(rel, safe="/")


class LabelStudioTask(NamedTuple):
    source: str
    text: str  # the task's JSON
    tally: Tally


def label_studio_tasks(
    records: Iterator[RecordView | None],
    summary: ExportSummary,
    *,
    selection: Selection,
    local_files_root: str | None,
) -> Iterator[LabelStudioTask]:
    """The export's stage (see `pipeline`): records -> tasks."""
    band = selection.band
    wide = replace(selection, threshold=band[0], thresholds={}, band=None) if band is not None else None
    for decision in _decisions(records, selection, summary):
        record = decision.record
        source = record["source"]
        chosen = [(i, d) for i, d in enumerate(decision.labels) if d.outcome in (SELECTED, REVIEW)]
        if not chosen:
            continue
        image = source if is_s3(source) else local_files_url(source, local_files_root)
        if image is None:
            summary.skip(source, NOT_SERVED, _not_served(local_files_root))
            continue
        if any(d.outcome is REVIEW for _, d in chosen):
            assert wide is not None
            widened = wide.decide(record).labels
            chosen = [(i, widened[i] if d.outcome is REVIEW else d) for i, d in chosen]
        yield _task(record, image, chosen, summary)


def _decisions(
    records: Iterable[RecordView | None], selection: Selection, summary: ExportSummary
) -> Iterator[Decision]:
    """Decisions for every effective record; unlike `common.decisions`, the band is not held out
    (people decide it, here in Label Studio)."""
    count = 0
    try:
        for record in records:
            count += 1
            if record is None:
                continue
            why = unsafe_source(record["source"])
            if why is not None:
                summary.skip(record["source"], UNSAFE_SOURCE, f"not exported: {why}")
                continue
            yield selection.decide(record)
    finally:
        summary.records += count


def _not_served(root: str | None) -> str:
    if root is None:
        return (
            "a local file: give --local-files-root DIR (the folder Label Studio serves as "
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT) or scan the images from s3://"
        )
    return f"not under --local-files-root {root}: Label Studio's local files storage cannot serve it"


def _task(
    record: RecordView, image: str, chosen: list[tuple[int, LabelDecision]], summary: ExportSummary
) -> LabelStudioTask:
    classes = summary.classes
    digest = source_digest(record["source"]).hex()[:10]
    results: list[dict[str, Any]] = []
    counts: list[tuple[int, int, bool]] = []
    drops: dict[str, int] = {}
    best = 0.0
    for class_id, decision in chosen:
        best = max(best, 100.0 if decision.human else decision.confidence)
        boxes = 0
        for instance in decision.instances:
            result = _result(record, instance, classes[class_id], decision.human, f"{digest}_{len(results)}")
            if isinstance(result, DropReason):
                drops[result.value] = drops.get(result.value, 0) + 1
                continue
            results.append(result)
            boxes += 1
        counts.append((class_id, boxes, decision.human))
    if drops:
        summary.drop_boxes(drops)
    version = model_version(record["detector"])
    task = {
        "data": {
            "image": image,
            "labelsift_source": record["source"],
            "labelsift_predicted": [classes[i] for i, _ in chosen],
        },
        "predictions": [{"model_version": version, "score": round(best / 100.0, 4), "result": results}],
    }
    return LabelStudioTask(record["source"], dump_json(task), Tally(ALL, tuple(counts)))


def model_version(detector: Any) -> str:
    """`<detector> <model version>` from the record's `detector` (read as written, not validated)."""
    if not isinstance(detector, dict) or not isinstance(detector.get("name"), str) or not detector["name"]:
        return "labelsift"
    version = detector.get("model_version")
    return f"{detector['name']} {version}" if isinstance(version, str) and version else detector["name"]


def _result(
    record: RecordView, instance: InstanceView, name: str, human: bool, result_id: str
) -> dict[str, Any] | DropReason:
    width, height = record["width"], record["height"]
    if width is None or height is None:
        return DropReason.NO_IMAGE_SIZE
    box = to_pixels(instance["left"], instance["top"], instance["width"], instance["height"], width, height)
    if isinstance(box, DropReason):
        return box
    score = 1.0 if human else round(instance["confidence"] / 100.0, 4)
    return {
        "id": result_id,
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": box.x * 100.0 / width,
            "y": box.y * 100.0 / height,
            "width": box.w * 100.0 / width,
            "height": box.h * 100.0 / height,
            "rotation": 0,
            "rectanglelabels": [name],
        },
        "score": score,
    }


def export_label_studio(
    manifest_uri: str,
    dest: str,
    selection: Selection,
    *,
    local_files_root: str | None = None,
    overwrite: bool = False,
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
    parallel: Parallel = PER_CORE,
    storage: StorageLike | None = None,
) -> ExportSummary:
    """Write the tasks to `dest` (a `.json` file, local or `s3://`) and the labeling config beside
    it; returns what was written. Both appear whole or not at all; an earlier export's files are
    replaced only with `overwrite`, a file labelsift did not write never."""
    classes = class_names(selection, None)
    root = _root(local_files_root)
    folder, name = output_parts(dest)
    config = config_name(name)
    summary = ExportSummary.start("label-studio", manifest_uri, dest, classes, detail_limit=detail_limit)
    require_manifest(manifest_uri)
    stage = partial(label_studio_tasks, selection=selection, local_files_root=root)
    with OwnedOutput(
        folder,
        storage or Storage(),
        fmt="label-studio",
        manifest=manifest_uri,
        overwrite=overwrite,
        single=name,
    ) as out:
        with out.open_text(name) as stream:
            stream.write("[")
            for task in staged(manifest_uri, selection, summary, stage, parallel):
                stream.write(",\n" if summary.lines_written else "\n")
                stream.write(task.text)
                summary.lines_written += 1
                out.note_source(task.source)
                count_detection(summary, task.tally)
            stream.write("\n]\n")
            _refuse_if_nothing_served(summary)
        out.write_bytes(config, label_config(classes).encode("utf-8"))
        summary.files_written = 2
        out.commit(summary)
    return summary


def _root(local_files_root: str | None) -> str | None:
    if local_files_root is None:
        return None
    if is_s3(local_files_root) or "://" in local_files_root:
        raise UsageError(
            f"--local-files-root {local_files_root}: give a local folder (Label Studio's "
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); s3:// sources need no root."
        )
    return os.path.normpath(os.path.abspath(os.path.expanduser(local_files_root)))


def _refuse_if_nothing_served(summary: ExportSummary) -> None:
    local = summary.skipped.get(NOT_SERVED, 0)
    if local and not summary.lines_written:
        why = next((i.message for i in summary.skipped_images if i.code == NOT_SERVED), "not served")
        raise CannotProceed(
            f"all {local} selected images of {summary.manifest} are local files Label Studio could not "
            f"be given ({why}): nothing was written."
        )
