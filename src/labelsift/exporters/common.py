"""Small pieces every exporter shares: the storage it writes through, safe relative paths, error
codes and compact JSON.

What an export does is spread by concern: `naming` (classes, splits, file names), `records`
(the manifest's records decided by the selection), `detections` (selected images and their
boxes), `detection_export` (the skeleton of COCO, YOLO and VOC), `owned` (the destination: what
an export may write there, and how its files appear whole), `pipeline` (where the per-record
work runs) and `summary` (what an export did).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from pydantic_core import to_json

from labelsift.storage import ObjectInfo


class StorageLike(Protocol):
    """The part of `labelsift.storage.Storage` the exporters use."""

    def copy(self, src: str, dst: str, *, overwrite: bool = False) -> bool: ...

    def write(self, uri: str, data: bytes) -> None: ...

    def list(self, root: str, *, images_only: bool = True) -> Iterator[ObjectInfo]: ...

    def remove(self, uri: str) -> int: ...

    def exists(self, uri: str) -> ObjectInfo | None: ...

    def read(self, uri: str, *, if_match: str | None = None, limit: int | None = None) -> bytes: ...


def check_relative(rel: str) -> str:
    """Refuse a relative destination path that is absolute or could climb out of its root."""
    parts = rel.split("/")
    if rel.startswith("/") or "\\" in rel or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"{rel!r} is not a safe relative path under the destination")
    return rel


def error_code(error: Exception) -> str:
    """A short code for a per-image failure: the storage error's code, else the exception's name."""
    return str(getattr(error, "code", "") or type(error).__name__)


def dump_json(value: Any) -> str:
    """Compact JSON, UTF-8 as is (no `\\u` escapes): pydantic-core's serializer, 3x `json.dumps`."""
    return to_json(value).decode("utf-8")
