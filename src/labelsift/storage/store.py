"""The `Storage` interface over `s3://bucket/prefix` and local folders: list, stat, read, write, copy,
remove.
"""

from __future__ import annotations

import difflib
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)
from s3transfer.exceptions import RetriesExceededError

from labelsift.imagelimits import SPOOL_BYTES
from labelsift.listing import FOLDER_MARKER, ListingNotes, walk_local
from labelsift.storage.errors import StorageError, too_large_error
from labelsift.storage.faults import botocore_error, client_error, raise_mapped
from labelsift.storage.local import (
    check_local_etag,
    check_local_source,
    local_etag,
    open_local,
    remove_local,
    s3_etag_of_file,
    same_bytes,
    strip_etag,
    write_local_whole,
)
from labelsift.storage.paths import S3_SCHEME, is_image_key, is_s3, local_path, s3_folder, split_s3
from labelsift.storage.s3_reads import get_object_bytes, get_object_response, stream_into
from labelsift.uri import shown

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


DEFAULT_REGION = "us-east-1"


# S3 user metadata on a server-side copy: the source's ETag, for when the copy's own ETag differs
# (a multipart copy's ETag depends on the part sizes and, on some servers, on the copy itself)
SOURCE_ETAG_METADATA = "labelsift-source-etag"


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    key: str
    size: int
    etag: str | None
    version_id: str | None = None
    storage_class: str | None = None
    copied_from: str | None = None  # S3 only: the source ETag a copy by labelsift recorded on it


class Storage:
    """S3 and local files behind one interface. Thread-safe; one instance per run is plenty."""

    def __init__(
        self,
        session: boto3.session.Session | None = None,
        *,
        max_pool_connections: int = 50,
        multipart_threshold: int = 8 * 1024**2,
        multipart_chunksize: int = 8 * 1024**2,
    ) -> None:
        self._session = session
        self._max_pool_connections = max_pool_connections
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )
        self._lock = threading.Lock()
        self._clients: dict[str | None, S3Client] = {}
        self._regions: dict[str, str] = {}
        self._region_denied: set[str] = set()

    def s3_client(self, region: str | None = None) -> S3Client:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                if self._session is None:
                    self._session = boto3.session.Session()
                config = Config(
                    retries={"mode": "standard", "max_attempts": 5},
                    max_pool_connections=self._max_pool_connections,
                )
                try:
                    client = self._session.client("s3", region_name=region, config=config)
                except BotoCoreError as error:
                    raise botocore_error(error, "s3://", "create an S3 client for") from error
                self._clients[region] = client
            return client

    def bucket_region(self, bucket: str) -> str:
        with self._lock:
            cached = self._regions.get(bucket)
        if cached is not None:
            return cached
        region = self._lookup_region(bucket)
        with self._lock:
            self._regions[bucket] = region
        return region

    def _lookup_region(self, bucket: str) -> str:
        client = self.s3_client()
        uri = f"{S3_SCHEME}{bucket}"
        try:
            location = client.get_bucket_location(Bucket=bucket).get("LocationConstraint")
            if location == "EU":
                return "eu-west-1"
            return str(location) if location else DEFAULT_REGION
        except ClientError as error:
            mapped = client_error(error, uri, "find the region of")
            if mapped.code != "AccessDenied":
                raise mapped from error
        except BotoCoreError as error:
            raise botocore_error(error, uri, "find the region of") from error
        try:
            headers = client.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
        except ClientError as error:
            headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            if "x-amz-bucket-region" not in headers:
                raise client_error(error, uri, "find the region of") from error
        except BotoCoreError as error:
            raise botocore_error(error, uri, "find the region of") from error
        return str(headers.get("x-amz-bucket-region") or DEFAULT_REGION)

    def _client_for(self, bucket: str) -> S3Client:
        """The client for the bucket's region; the default one when the region may not be read
        (object-level permissions only): botocore then follows S3's region redirects itself."""
        with self._lock:
            region_denied = bucket in self._region_denied
        if not region_denied:
            try:
                return self.s3_client(self.bucket_region(bucket))
            except StorageError as error:
                if error.code != "AccessDenied":
                    raise
            with self._lock:
                self._region_denied.add(bucket)
        return self.s3_client()

    def list(
        self, root: str, *, images_only: bool = True, notes: ListingNotes | None = None
    ) -> Iterator[ObjectInfo]:
        """Every object under `root` (a bucket, prefix, folder, or single object), sorted by key.

        A root that names one object yields just that object, keyed by its base name. What is not
        yielded (folder markers, links, unreadable entries and, with `images_only`, files without an
        image extension) is counted in `notes`; one bad entry never stops the listing.
        """
        notes = ListingNotes() if notes is None else notes
        entries = self._list_s3(root, notes) if is_s3(root) else self._list_local(root, notes)
        for info in entries:
            if not images_only or is_image_key(info.key):
                yield info
            else:
                notes.add_format(info.key)

    def _list_s3(self, root: str, notes: ListingNotes) -> Iterator[ObjectInfo]:
        bucket, root_key = split_s3(root)
        try:
            client = self._client_for(bucket)
            if root_key and not root_key.endswith("/"):
                first = client.list_objects_v2(Bucket=bucket, Prefix=root_key, MaxKeys=1).get("Contents", [])
                if first and first[0]["Key"] == root_key:
                    item = first[0]
                    yield ObjectInfo(
                        uri=root,
                        key=PurePosixPath(root_key).name,
                        size=item["Size"],
                        etag=strip_etag(item.get("ETag")),
                        storage_class=item.get("StorageClass"),
                    )
                    return
            folder = s3_folder(root_key)
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/"):
                        notes.add(key, FOLDER_MARKER)
                        continue
                    yield ObjectInfo(
                        uri=f"{S3_SCHEME}{bucket}/{key}",
                        key=key[len(folder) :],
                        size=item["Size"],
                        etag=strip_etag(item.get("ETag")),
                        storage_class=item.get("StorageClass"),
                    )
        except (ClientError, BotoCoreError) as error:
            raise_mapped(error, root, "list")

    def _list_local(self, root: str, notes: ListingNotes) -> Iterator[ObjectInfo]:
        # The root's own links resolved: a source is recorded by its real path, so the folder (or
        # image) scanned again through a symlink to it is known to the manifest, never paid twice.
        base = os.path.realpath(local_path(root))
        try:
            if os.path.isfile(base):
                stat = os.stat(base)
                yield ObjectInfo(base, os.path.basename(base), stat.st_size, local_etag(stat))
                return
            for key, path, stat in walk_local(base, notes):
                yield ObjectInfo(path, key, stat.st_size, local_etag(stat))
        except OSError as error:
            raise_mapped(error, root, "list")

    def nothing_listed(self, root: str, notes: ListingNotes) -> str:
        """Why listing `root` gave no image, and what the user may have meant instead."""
        where = shown(root)
        if notes.total:
            return f"No image to scan in {where}: it holds only what is counted above."
        if not is_s3(root):
            return f"No image to scan in {where}: the folder holds no files."
        bucket, key = split_s3(root)
        if not key.strip("/"):
            return f"No image to scan in {where}: the bucket {bucket!r} is empty."
        near = self._neighbours(bucket, key)
        hint = f"No object under {where}. S3 prefixes are exact and case-sensitive"
        if near:
            return hint + ": did you mean " + " or ".join(f"{S3_SCHEME}{bucket}/{n}" for n in near) + "?"
        return hint + f"; `aws s3 ls {S3_SCHEME}{bucket}/` shows what the bucket holds."

    def _neighbours(self, bucket: str, key: str) -> tuple[str, ...]:
        """Up to 3 keys or folders beside `key` whose names are close to its last segment."""
        parent, _, name = key.rstrip("/").rpartition("/")
        parent = parent + "/" if parent else ""
        try:
            answer = self._client_for(bucket).list_objects_v2(
                Bucket=bucket, Prefix=parent, Delimiter="/", MaxKeys=1000
            )
        except (ClientError, BotoCoreError, StorageError):
            return ()  # only a hint: the plain message stands without it
        names = [p["Prefix"][len(parent) :] for p in answer.get("CommonPrefixes", [])]
        names += [item["Key"][len(parent) :] for item in answer.get("Contents", [])]
        by_lower = {n.rstrip("/").lower(): n for n in names if n.rstrip("/")}
        wanted = name.lower()
        near = [n for low, n in by_lower.items() if low.startswith(wanted) or wanted.startswith(low)]
        near += [by_lower[m] for m in difflib.get_close_matches(wanted, list(by_lower), n=3, cutoff=0.6)]
        return tuple(parent + n for n in dict.fromkeys(near))[:3]

    def stat(self, uri: str) -> ObjectInfo:
        if not is_s3(uri):
            path = local_path(uri)
            try:
                stat = os.stat(path)
            except OSError as error:
                raise_mapped(error, uri, "read")
            if not os.path.isfile(path):
                raise StorageError("NotFound", uri, f"{uri} is a folder, not a file. Name a file.")
            return ObjectInfo(path, path, stat.st_size, local_etag(stat))
        bucket, key = split_s3(uri)
        try:
            head = self._client_for(bucket).head_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            raise_mapped(error, uri, "read")
        return ObjectInfo(
            uri=uri,
            key=key,
            size=head["ContentLength"],
            etag=strip_etag(head.get("ETag")),
            version_id=head.get("VersionId"),
            storage_class=head.get("StorageClass") or "STANDARD",
            copied_from=(head.get("Metadata") or {}).get(SOURCE_ETAG_METADATA),
        )

    def exists(self, uri: str) -> ObjectInfo | None:
        try:
            return self.stat(uri)
        except StorageError as error:
            if error.code in ("NoSuchKey", "NotFound"):
                return None
            raise

    def read_range(self, uri: str, start: int, length: int, *, if_match: str | None = None) -> bytes:
        """`length` bytes from offset `start`; fewer at the end of the object, b"" past it.

        With `if_match` (an etag as `list` reports it), an object that is no longer that version
        raises StorageError("Changed").
        """
        if start < 0:
            raise ValueError("start must be >= 0")
        if length <= 0:
            return b""
        if not is_s3(uri):
            try:
                with open(local_path(uri), "rb") as handle:
                    check_local_etag(handle, uri, if_match)
                    handle.seek(start)
                    return handle.read(length)
            except OSError as error:
                raise_mapped(error, uri, "read")
        bucket, key = split_s3(uri)
        try:
            client = self._client_for(bucket)
            return get_object_bytes(client, bucket, key, f"bytes={start}-{start + length - 1}", if_match)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise_mapped(error, uri, "read")
        except BotoCoreError as error:
            raise_mapped(error, uri, "read")

    def read(self, uri: str, *, if_match: str | None = None, limit: int | None = None) -> bytes:
        """The whole object, streamed in chunks; over `limit` bytes: StorageError("TooLarge")."""
        with self.open_read(uri, limit=limit, if_match=if_match, into=io.BytesIO()) as handle:
            try:
                return handle.read()
            except OSError as error:
                raise_mapped(error, uri, "read")

    def open_read(
        self, uri: str, *, limit: int | None, if_match: str | None = None, into: IO[bytes] | None = None
    ) -> IO[bytes]:
        """A readable, seekable file of the object, never whole in memory unless it is small.

        A local file is opened in place; an S3 object is streamed (`into`, by default a temporary
        file kept in memory up to `SPOOL_BYTES`, then on disk). An object over `limit` bytes raises
        StorageError("TooLarge") before it is read, or as soon as the stream passes the limit.
        """
        if not is_s3(uri):
            return open_local(uri, limit, if_match)
        bucket, key = split_s3(uri)
        out = into if into is not None else tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        try:
            response = get_object_response(self._client_for(bucket), bucket, key, None, if_match)
            size = response.get("ContentLength")
            if limit is not None and size is not None and size > limit:
                response["Body"].close()
                raise too_large_error(uri, size, limit)
            stream_into(response["Body"], out, uri, limit)
        except (ClientError, BotoCoreError) as error:
            out.close()
            raise_mapped(error, uri, "read")
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return out

    def write(self, uri: str, data: bytes) -> None:
        if not is_s3(uri):
            try:
                write_local_whole(local_path(uri), lambda handle: handle.write(data))
            except OSError as error:
                raise_mapped(error, uri, "write")
            return
        bucket, key = split_s3(uri)
        try:
            self._put(bucket, key, data)
        except (ClientError, BotoCoreError) as error:
            raise_mapped(error, uri, "write")

    def _put(self, bucket: str, key: str, data: bytes) -> None:
        client = self._client_for(bucket)
        if data:
            client.put_object(Bucket=bucket, Key=key, Body=data)
        else:
            # An explicit empty body makes some S3-compatible servers (SeaweedFS) answer twice
            # and stall the pooled connection; no body at all is the same empty object.
            client.put_object(Bucket=bucket, Key=key)

    def copy(self, src: str, dst: str, *, overwrite: bool = False) -> bool:
        """Copy one object. False when `dst` provably holds the same content already.

        Proof is by content, never by size: equal S3 ETags (or the source ETag an earlier copy
        recorded on the destination), an MD5 of the local file against the S3 ETag (multipart ETags
        recomputed with the object's own part size), or a byte comparison of two local files.
        Anything else at `dst` raises StorageError("Exists") unless `overwrite`. A local `src` must be
        canonical (`labelsift.uri.parse_recorded`: absolute, no `.`/`..` or empty segments), or it is
        StorageError("UnsafeSource"): a manifest's source never names a file outside what was
        scanned. A symbolic link to a file is read as its target, as the scan read it.
        """
        if not is_s3(src):
            check_local_source(src)
        existing = self.exists(dst)
        if existing is not None:
            source = self.stat(src)
            if self.same_content(source, existing):
                return False
            if not overwrite:
                same_size = (
                    "of the same size but different content"
                    if existing.size == source.size
                    else (f"of {existing.size} bytes, the source has {source.size}")
                )
                raise StorageError(
                    "Exists",
                    dst,
                    f"Not copying {src} to {dst}: a different object ({same_size}) is already there. "
                    "Choose an empty destination or allow overwriting.",
                )
        try:
            if is_s3(src) and is_s3(dst):
                self._copy_s3_to_s3(src, dst)
            elif is_s3(dst):
                bucket, key = split_s3(dst)
                with open(local_path(src), "rb") as source_file:
                    if os.fstat(source_file.fileno()).st_size == 0:
                        self._put(bucket, key, b"")
                    else:
                        self._client_for(bucket).upload_fileobj(
                            source_file, bucket, key, Config=self._transfer
                        )
            elif is_s3(src):
                bucket, key = split_s3(src)
                client = self._client_for(bucket)
                write_local_whole(
                    local_path(dst),
                    lambda handle: client.download_fileobj(bucket, key, handle, Config=self._transfer),
                )
            else:
                with open(local_path(src), "rb") as source_file:
                    write_local_whole(local_path(dst), lambda handle: shutil.copyfileobj(source_file, handle))
        except (ClientError, BotoCoreError, RetriesExceededError, OSError) as error:
            raise_mapped(error, dst, f"copy {src} to")
        return True

    def same_content(self, source: ObjectInfo, target: ObjectInfo) -> bool:
        """Whether `target` provably holds the bytes of `source` (both as `stat` reports them)."""
        if source.size != target.size:
            return False
        if is_s3(source.uri) and is_s3(target.uri):
            return source.etag is not None and source.etag in (target.etag, target.copied_from)
        if not is_s3(source.uri) and not is_s3(target.uri):
            try:
                return same_bytes(source.uri, target.uri)
            except OSError as error:
                raise_mapped(error, source.uri, "compare")
        remote, local = (source, target) if is_s3(source.uri) else (target, source)
        if not remote.etag:
            return False
        part_size = None
        if "-" in remote.etag:
            part_size = self._first_part_size(remote.uri)
            if part_size is None:
                return False
        try:
            return s3_etag_of_file(local.uri, part_size) == remote.etag
        except OSError as error:
            raise_mapped(error, local.uri, "read")

    def _first_part_size(self, uri: str) -> int | None:
        """The size of part 1 of a multipart object: the part size its ETag was computed with."""
        bucket, key = split_s3(uri)
        try:
            head = self._client_for(bucket).head_object(Bucket=bucket, Key=key, PartNumber=1)
        except (ClientError, BotoCoreError):
            return None  # cannot prove it: the caller copies again
        size = head.get("ContentLength")
        return int(size) if size else None

    def remove(self, uri: str) -> int:
        """Delete the object or file at `uri` and everything under it as a folder; how many went."""
        if not is_s3(uri):
            try:
                return remove_local(local_path(uri))
            except OSError as error:
                raise_mapped(error, uri, "delete")
        bucket, _ = split_s3(uri)
        removed = 0
        batch: list[str] = []

        def flush() -> None:
            nonlocal removed
            if not batch:
                return
            try:
                answer = self._client_for(bucket).delete_objects(
                    Bucket=bucket, Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True}
                )
            except (ClientError, BotoCoreError) as error:
                raise_mapped(error, f"{S3_SCHEME}{bucket}/{batch[0]}", "delete")
            failed = answer.get("Errors", [])
            if failed:
                first = failed[0]
                where = f"{S3_SCHEME}{bucket}/{first.get('Key', '')}"
                why = str(first.get("Message", "")).rstrip(".")
                raise StorageError(
                    str(first.get("Code", "DeleteFailed")),
                    where,
                    f"Could not delete {len(failed)} objects under {uri}, the first {where}: {why}. "
                    "Check the destination's permissions (s3:DeleteObject) and rerun.",
                    fatal=True,
                )
            removed += len(batch)
            batch.clear()

        for info in self.list(uri, images_only=False):
            batch.append(split_s3(info.uri)[1])
            if len(batch) == 1000:  # DeleteObjects' limit per request
                flush()
        flush()
        return removed

    def _copy_s3_to_s3(self, src: str, dst: str) -> None:
        """A server-side copy. One that goes multipart gets a new ETag, so it carries the source's
        ETag (and keeps the source's content type and metadata) for `same_content` to prove by."""
        src_bucket, src_key = split_s3(src)
        dst_bucket, dst_key = split_s3(dst)
        source_client = self._client_for(src_bucket)
        extra: dict[str, Any] = {}
        head = source_client.head_object(Bucket=src_bucket, Key=src_key)
        if head["ContentLength"] >= self._transfer.multipart_threshold and head.get("ETag"):
            metadata = {**(head.get("Metadata") or {}), SOURCE_ETAG_METADATA: strip_etag(head["ETag"]) or ""}
            extra = {"Metadata": metadata, "MetadataDirective": "REPLACE"}
            if head.get("ContentType"):
                extra["ContentType"] = head["ContentType"]
        self._client_for(dst_bucket).copy(
            {"Bucket": src_bucket, "Key": src_key},
            dst_bucket,
            dst_key,
            SourceClient=source_client,
            Config=self._transfer,
            ExtraArgs=extra or None,
        )
