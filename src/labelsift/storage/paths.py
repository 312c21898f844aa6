"""S3 URIs and local paths: telling them apart, splitting, joining and relating keys safely."""

from __future__ import annotations

import os
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from labelsift.errors import UsageError
from labelsift.image_types import IMAGE_EXTENSIONS
from labelsift.storage.errors import StorageError
from labelsift.uri import LocalLocation, Location, S3Location, parse, shown

if TYPE_CHECKING:
    pass


S3_SCHEME = "s3://"


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEME)


def _location(text: str) -> Location:
    """`text` parsed once by `labelsift.uri.parse`; a refused one (a presigned or http(s) URL, a
    collapsed `s3:/`) is a StorageError("InvalidUri") whose message never shows the URL's query."""
    try:
        return parse(text)
    except UsageError as exc:
        raise StorageError("InvalidUri", shown(text), str(exc)) from None


def split_s3(uri: str) -> tuple[str, str]:
    location = _location(uri)
    if not isinstance(location, S3Location):
        raise StorageError("InvalidUri", uri, f"{uri!r} is not an S3 URI; write it as s3://bucket/key.")
    return location.bucket, location.key


def local_path(path: str) -> str:
    location = _location(path)
    if not isinstance(location, LocalLocation):
        raise StorageError("InvalidUri", path, f"{path!r} is an S3 URI, not a local path.")
    return str(location.path)


def _unsafe(root: str, key: str, why: str) -> StorageError:
    return StorageError(
        "UnsafePath",
        key,
        f"Refusing key {key!r} under {root!r}: {why}. Keys must stay inside the destination folder; "
        "rename the object or choose another layout.",
    )


def join(root: str, key: str) -> str:
    """`root/key`. For local roots a key that would land outside `root` raises UnsafePath.

    Leading slashes of a key (legal in S3) are dropped when joining locally, so `/a.jpg` lands at
    `root/a.jpg`; `..` segments, NUL bytes and paths escaping through symlinks are refused.
    """
    if is_s3(root):
        return (root if root.endswith("/") else root + "/") + key
    if "\0" in key:
        raise _unsafe(root, key, "it contains a NUL byte")
    parts = [part for part in key.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _unsafe(root, key, "it contains a '..' segment")
    if not parts:
        raise _unsafe(root, key, "it names no file")
    base = local_path(root)
    path = os.path.join(base, *parts)
    real_base = os.path.realpath(base)
    if os.path.commonpath([real_base, os.path.realpath(path)]) != real_base:
        raise _unsafe(root, key, "it resolves outside the folder through a symbolic link")
    return path


def s3_folder(key: str) -> str:
    return key if key == "" or key.endswith("/") else key + "/"


def relative_key(root: str, uri: str) -> str:
    """The key of `uri` relative to `root`, as `list(root)` reports it ('/'-separated)."""
    if is_s3(root) != is_s3(uri):
        raise StorageError("NotUnderRoot", uri, f"{uri!r} is not under {root!r}.")
    if is_s3(root):
        root_bucket, root_key = split_s3(root)
        bucket, key = split_s3(uri)
        if bucket == root_bucket:
            if key == root_key and root_key and not root_key.endswith("/"):
                return PurePosixPath(key).name
            folder = s3_folder(root_key)
            if key.startswith(folder) and len(key) > len(folder):
                return key[len(folder) :]
        raise StorageError("NotUnderRoot", uri, f"{uri!r} is not under {root!r}.")
    base, path = local_path(root), local_path(uri)
    if path == base:
        return os.path.basename(path)
    rel = os.path.relpath(path, base)
    if rel == ".." or rel.startswith(".." + os.sep):
        raise StorageError("NotUnderRoot", uri, f"{uri!r} is not under {root!r}.")
    return rel.replace(os.sep, "/")


def is_image_key(key: str) -> bool:
    return PurePosixPath(key).suffix.lower() in IMAGE_EXTENSIONS
