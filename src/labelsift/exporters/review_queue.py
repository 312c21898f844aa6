"""A Ground Truth labelling-job input manifest of the images people should decide.

One `{"source-ref": "s3://..."}` line per image held out by the selection's review band (its best
matching confidence for a query label lies inside the band), sorted by that confidence, lowest
first (an image in the band for several labels is listed once, at its lowest). With
`missing_boxes`, also every image selected for a label that has no usable box at the selection's
threshold: the images detection exports hold out (`label_without_boxes`), for a bounding-box job.
Sorting happens in a temporary on-disk SQLite table, so memory stays flat however many images are held out.
Ground Truth reads images from S3: local sources are skipped (code `not_s3`) unless `allow_local`.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile

from labelsift.errors import UsageError
from labelsift.select import Selection
from labelsift.storage import Storage, is_s3

from .common import StorageLike, dump_json
from .detections import labels_without_boxes
from .naming import class_names
from .owned import OwnedOutput, output_parts, refuse_if_nothing_in_s3
from .records import iter_decisions, require_manifest
from .summary import ALL, DEFAULT_DETAIL_LIMIT, ExportSummary


def export_review_queue(
    manifest_uri: str,
    dest: str,
    selection: Selection,
    *,
    allow_local: bool = False,
    missing_boxes: bool = False,
    overwrite: bool = False,
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
    storage: StorageLike | None = None,
) -> ExportSummary:
    """Write the queue to `dest` (a file: local path or `s3://`); an existing one only with `overwrite`."""
    if selection.band is None and not missing_boxes:
        raise UsageError("--band: a review queue needs a band LOW:HIGH of confidences, e.g. 50:80.")
    require_manifest(manifest_uri)
    classes = class_names(selection, None)
    summary = ExportSummary.start("review", manifest_uri, dest, classes, detail_limit=detail_limit)
    with tempfile.TemporaryDirectory(prefix="labelsift-review-") as tmp:
        db = sqlite3.connect(os.path.join(tmp, "queue.sqlite"))
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("CREATE TABLE queue (source TEXT PRIMARY KEY, confidence REAL)")
            for decision in iter_decisions(manifest_uri, selection, summary):
                held = decision.held_out + (labels_without_boxes(decision) if missing_boxes else [])
                if not held:
                    continue
                source = decision.record["source"]
                if not is_s3(source) and not allow_local:
                    summary.skip(source, "not_s3", "Ground Truth reads images from S3 only")
                    continue
                db.execute(
                    "INSERT INTO queue VALUES (?, ?) ON CONFLICT(source) DO UPDATE SET "
                    "confidence = min(confidence, excluded.confidence)",
                    (source, min(d.confidence for d in held)),
                )
            _write(db, dest, manifest_uri, storage, summary, overwrite=overwrite, allow_local=allow_local)
        finally:
            db.close()
    return summary


def _write(
    db: sqlite3.Connection,
    dest: str,
    manifest_uri: str,
    storage: StorageLike | None,
    summary: ExportSummary,
    *,
    overwrite: bool,
    allow_local: bool,
) -> None:
    folder, name = output_parts(dest)
    with OwnedOutput(
        folder, storage or Storage(), fmt="review", manifest=manifest_uri, overwrite=overwrite, single=name
    ) as out:
        with out.open_text(name) as stream:
            for (source,) in db.execute("SELECT source FROM queue ORDER BY confidence, source"):
                stream.write(dump_json({"source-ref": source}) + "\n")
                summary.lines_written += 1
                summary.count_export(ALL)
                out.note_source(source)
            if not allow_local:
                refuse_if_nothing_in_s3(summary, "A review queue")
        summary.files_written = 1
        out.commit(summary)
