"""Rekognition Custom Labels folder layout: each selected image copied to `DEST/<folder>/<key>`.

- `folder` is the class name (the query label, or its `names` override): Custom Labels turns each
  direct child folder of the prefix into a label. An image selected for two labels goes in both.
- `key` is `bucket/key` for an `s3://bucket/key` source (deeper folders inherit the label; equal
  keys in different buckets never collide). For a local source it is `_local/<absolute path>`, or
  the path relative to `source_root` when given. A key depends on its source alone, so it never
  moves when the manifest grows (before receipts, keys depended on the manifest's set of buckets).
- Copies go through `storage.copy` (server-side for S3 -> S3) into a destination the export owns
  (`owned.py`): a rerun adds, and copies nothing whose earlier copy is of the same source version
  (the receipt's etag); a changed source is copied again. A file labelsift did not write in the
  way stops the export. `overwrite=True` also deletes the earlier exports' copies this one no
  longer makes. `dry_run` returns the plan and counts only.
- Custom Labels' image rules (JPEG or PNG, each side 64-4096 px, at most 15 MB, aspect ratio at
  most 20:1) are checked from the record: an image breaking one is skipped (or, with
  `enforce_limits=False`, copied with a warning); an unknown value is a warning. Sizes are in the
  displayed frame (after EXIF orientation), as in the manifest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import partial

from labelsift.errors import UsageError
from labelsift.select import Selection
from labelsift.service_limits import CUSTOM_LABELS_IMAGE_FORMATS as FORMATS
from labelsift.service_limits import CUSTOM_LABELS_MAX_ASPECT as MAX_ASPECT
from labelsift.service_limits import CUSTOM_LABELS_MAX_IMAGE_BYTES as MAX_BYTES
from labelsift.service_limits import CUSTOM_LABELS_MAX_SIDE as MAX_SIDE
from labelsift.service_limits import CUSTOM_LABELS_MIN_SIDE as MIN_SIDE
from labelsift.storage import is_s3, split_s3
from labelsift.views import RecordView

from .common import StorageLike, check_relative
from .naming import class_names
from .owned import OwnedOutput, copy_image
from .records import iter_decisions, require_manifest, unsafe_source
from .summary import ALL, DEFAULT_DETAIL_LIMIT, ExportSummary


def image_problems(record: RecordView) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(broken rules, unknowns) of Custom Labels' image limits, as (code, message) pairs."""
    broken: list[tuple[str, str]] = []
    unknown: list[tuple[str, str]] = []
    image_format, width, height, size = record["format"], record["width"], record["height"], record["size"]
    if image_format is None:
        unknown.append(("unknown_format", "the image format is unknown"))
    elif image_format.upper() not in FORMATS:
        broken.append(("format", f"{image_format} is not JPEG or PNG"))
    if width is None or height is None:
        unknown.append(("unknown_size", "the image width/height are unknown"))
    else:
        short, long = sorted((width, height))
        if short < MIN_SIDE or long > MAX_SIDE:
            broken.append(
                (
                    "dimensions",
                    f"{width}x{height} px is outside {MIN_SIDE}-{MAX_SIDE} px a side",
                )
            )
        if long / short > MAX_ASPECT:
            broken.append(("aspect_ratio", f"aspect ratio {long / short:.1f}:1 is above {MAX_ASPECT:.0f}:1"))
    if size is None:
        unknown.append(("unknown_bytes", "the file size is unknown"))
    elif size > MAX_BYTES:
        broken.append(("file_size", f"{size} bytes is above 15 MB"))
    return broken, unknown


LOCAL = "_local"  # S3 bucket names start with a letter or digit: never this


def source_key(source: str, *, local_root: str | None = None) -> str:
    """The path of `source` under a label folder: `<bucket>/<key>` for S3; for a local file its path
    relative to `local_root` when given, else `_local/<absolute path>`. It depends on the source
    alone, so keys never move when the manifest grows."""
    if is_s3(source):
        bucket, key = split_s3(source)
        return f"{bucket}/{key}"
    if local_root is not None:
        return os.path.relpath(source, local_root).replace(os.sep, "/")
    return f"{LOCAL}/{source.lstrip('/')}"


def export_custom_labels(
    manifest_uri: str,
    dest: str,
    selection: Selection,
    *,
    storage: StorageLike | None = None,
    names: Mapping[str, str] | None = None,
    source_root: str | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    enforce_limits: bool = True,
    detail_limit: int = DEFAULT_DETAIL_LIMIT,
) -> ExportSummary:
    classes = class_names(selection, names)
    for name in classes:
        try:
            safe = "/" not in name and check_relative(name) == name
        except ValueError:  # '.', '..', a backslash: not one plain folder name
            safe = False
        if not safe:
            raise UsageError(
                f"--name: {name!r} cannot be a folder name; give a name without '/', '\\', and not '.' "
                "or '..' (a label of that name needs --name LABEL=folder)."
            )
    if storage is None and not dry_run:
        raise ValueError("storage: copying images needs a Storage")
    summary = ExportSummary.start("custom-labels", manifest_uri, dest, classes, detail_limit=detail_limit)
    summary.dry_run = dry_run
    local_root = os.path.abspath(os.path.expanduser(source_root)) if source_root is not None else None
    require_manifest(manifest_uri)
    out = OwnedOutput(
        dest, storage, fmt="custom-labels", manifest=manifest_uri, overwrite=overwrite, keep_earlier=True
    )
    copy_all = partial(
        _copy_all, out, manifest_uri, selection, summary, classes, local_root, enforce_limits=enforce_limits
    )
    if dry_run:  # nothing is written: the plan only
        copy_all(dry_run=True)
        return summary
    with out:
        copy_all(dry_run=False)
        out.commit(summary)
    return summary


def _key(source: str, local_root: str | None, summary: ExportSummary) -> str | None:
    """The source's key under a label folder, or None (counted as skipped) when it is not safe."""
    why = unsafe_source(source)
    if why is not None:
        summary.skip(source, "unsafe_source", f"not copied: {why}")
        return None
    try:
        return check_relative(source_key(source, local_root=local_root))
    except ValueError as error:
        summary.skip(source, "unsafe_key", str(error))
        return None


def _copy_all(
    out: OwnedOutput,
    manifest_uri: str,
    selection: Selection,
    summary: ExportSummary,
    classes: list[str],
    local_root: str | None,
    *,
    dry_run: bool,
    enforce_limits: bool,
) -> None:
    for decision in iter_decisions(manifest_uri, selection, summary):
        chosen = [(i, d) for i, d in enumerate(decision.labels) if d.selected]
        if not chosen:
            continue
        record = decision.record
        source = record["source"]
        broken, unknown = image_problems(record)
        for code, message in unknown:
            summary.warn(source, code, message)
        if broken and enforce_limits:
            code, message = broken[0]
            summary.skip(source, code, "; ".join(m for _, m in broken) if len(broken) > 1 else message)
            continue
        for code, message in broken:
            summary.warn(source, code, message)
        key = _key(source, local_root, summary)
        if key is None:
            continue
        exported = False
        for i, label in chosen:
            target = out.uri(f"{classes[i]}/{key}")
            if dry_run:
                summary.add_plan(source, target, classes[i])
            else:
                if not copy_image(
                    out,
                    source,
                    record["etag"],
                    record["size"],
                    f"{classes[i]}/{key}",
                    summary,
                    label=classes[i],
                ):
                    continue
            summary.count_image(classes[i], ALL, 0, human=label.human)
            exported = True
        if exported:
            summary.count_export(ALL)
