"""Rekognition Custom Labels folder layout: each selected image copied to `DEST/<folder>/<key>`.

- `folder` is the class name (the query label, or its `names` override): Custom Labels turns each
  direct child folder of the prefix into a label. An image selected for two labels goes in both.
- `key` for an `s3://bucket/key` source is the key within its bucket (so deeper folders inherit
  the label); when the manifest's S3 sources span several buckets it is `bucket/key`, so equal keys
  in different buckets never collide. For a local source it is the path relative to
  `source_root` (default: the deepest folder holding every local source, found by a first pass).
- Copies go through `storage.copy`: server-side for S3 -> S3, never twice (a rerun finds the same
  object and copies nothing), and a different object already at the destination is refused
  (skipped with code `Exists`) unless `overwrite=True`. `dry_run` returns the plan and counts only.
- Custom Labels' image rules (JPEG or PNG, each side 64-4096 px, at most 15 MB, aspect ratio at
  most 20:1) are checked from the record: an image breaking one is skipped (or, with
  `enforce_limits=False`, copied with a warning); an unknown value is a warning. Sizes are in the
  displayed frame (after EXIF orientation), as in the manifest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from labelsift.errors import UsageError
from labelsift.manifest import iter_sources
from labelsift.select import Selection
from labelsift.storage import is_s3, split_s3
from labelsift.views import RecordView

from .common import (
    OutputDir,
    StorageLike,
    check_relative,
    class_names,
    copy_image,
    iter_decisions,
)
from .summary import ALL, DEFAULT_DETAIL_LIMIT, ExportSummary

FORMATS = {"JPEG", "JPG", "PNG"}
MIN_SIDE = 64
MAX_SIDE = 4096
MAX_BYTES = 15 * 1024 * 1024
MAX_ASPECT = 20.0


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


def source_layout(manifest_uri: str) -> tuple[set[str], str | None]:
    """First pass: the S3 buckets of the sources and the deepest folder holding every local one."""
    buckets: set[str] = set()
    root: str | None = None
    for source in iter_sources(manifest_uri):
        if is_s3(source):
            buckets.add(split_s3(source)[0])
        elif "://" not in source:
            folder = os.path.dirname(os.path.abspath(os.path.expanduser(source)))
            root = folder if root is None else os.path.commonpath([root, folder])
    return buckets, root


def source_key(source: str, *, several_buckets: bool, local_root: str | None) -> str:
    """The path of `source` under a label folder (see the module docstring)."""
    if is_s3(source):
        bucket, key = split_s3(source)
        return f"{bucket}/{key}" if several_buckets else key
    path = os.path.abspath(os.path.expanduser(source))
    rel = os.path.relpath(path, local_root) if local_root else os.path.basename(path)
    return rel.replace(os.sep, "/")


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
        if "/" in name or check_relative(name) != name:
            raise UsageError(f"--name: {name!r} cannot be a folder name; give a name without '/'.")
    if storage is None and not dry_run:
        raise ValueError("storage: copying images needs a Storage")
    out = OutputDir(dest, storage)
    summary = ExportSummary.start("custom-labels", manifest_uri, dest, classes, detail_limit=detail_limit)
    summary.dry_run = dry_run
    buckets, local_root = source_layout(manifest_uri)
    if source_root is not None:
        local_root = os.path.abspath(os.path.expanduser(source_root))
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
        try:
            key = check_relative(source_key(source, several_buckets=len(buckets) > 1, local_root=local_root))
        except ValueError as error:
            summary.skip(source, "unsafe_key", str(error))
            continue
        exported = False
        for i, label in chosen:
            target = out.uri(f"{classes[i]}/{key}")
            if dry_run:
                summary.add_plan(source, target, classes[i])
            else:
                rel = f"{classes[i]}/{key}"
                if not copy_image(out, source, rel, summary, overwrite=overwrite, label=classes[i]):
                    continue
            summary.count_image(classes[i], ALL, 0, human=label.human)
            exported = True
        if exported:
            summary.count_export(ALL)
    return summary
