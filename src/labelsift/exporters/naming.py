"""How an export names things: its classes, each image's split, and each exported file.

- Class order: the order the labels were given to the `Selection` (renamed through `names`), the
  same in every file and split of an export.
- Split: `val` when a hash of the source URI falls under `val_fraction`, else `train`; it depends on
  nothing but the source, so adding images never moves old ones.
- File names: `<sanitised key path>-<12 hex of sha1(source)>.<ext>`: unique even when two sources
  share a basename, a single path segment (no `/`, never `.` or `..`), so it cannot leave the
  destination; the extension is the source's own when it is an image's, else its format's.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from labelsift.errors import UsageError
from labelsift.image_types import IMAGE_EXTENSIONS
from labelsift.select import Selection
from labelsift.storage import is_s3, split_s3

TRAIN = "train"
VAL = "val"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {"JPEG": ".jpg", "JPG": ".jpg", "PNG": ".png"}


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
    """The SHA-1 of a source URI: what its split and its file name's hash are taken from."""
    return hashlib.sha1(source.encode("utf-8")).digest()


def check_fraction(val_fraction: float) -> None:
    """Refuse a val share outside 0-1 (NaN included)."""
    if not 0.0 <= val_fraction <= 1.0:  # NaN fails this too
        raise UsageError(
            f"--val {val_fraction}: give the share of images for the val split, from 0 to 1 (e.g. 0.2)."
        )


def split_for(source: str, val_fraction: float, digest: bytes | None = None) -> str:
    """`val` or `train`, from a hash of the source alone (stable as the dataset grows)."""
    check_fraction(val_fraction)
    return split_by_digest(digest or source_digest(source), val_fraction)


def split_by_digest(digest: bytes, val_fraction: float) -> str:
    """`split_for` from the source's digest, the fraction already checked."""
    return VAL if int.from_bytes(digest[:8], "big") / 2.0**64 < val_fraction else TRAIN


def key_path(source: str) -> str:
    """The path part of a source: the key for `s3://bucket/key`, else the path without its anchor."""
    if is_s3(source):
        return split_s3(source)[1]
    if "://" in source:
        return source.split("://", 1)[1]
    return Path(source).as_posix().lstrip("/")


def file_name_parts(source: str, image_format: str | None, digest: bytes | None = None) -> tuple[str, str]:
    """(stem, extension) of the file an image is exported as: a unique, single-segment stem from
    the source's key path, and the source's own extension if it is an image's, else its format's."""
    root, ext = os.path.splitext(key_path(source))
    return _stem(root, digest or source_digest(source)), _suffix(ext, image_format)


def _suffix(ext: str, image_format: str | None) -> str:
    suffix = ext.lower()
    if suffix in IMAGE_EXTENSIONS:
        return suffix
    return _EXTENSIONS.get((image_format or "").upper(), ".jpg")


def _stem(root: str, digest: bytes, max_len: int = 100) -> str:
    clean = _UNSAFE.sub("_", root.replace("/", "_")).strip("._") or "image"
    if len(clean) > max_len:
        clean = clean[-max_len:].lstrip("._") or "image"
    return f"{clean}-{digest.hex()[:12]}"
