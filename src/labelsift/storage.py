"""One interface over `s3://bucket/prefix` and local folders: list, stat, read, write, copy.

Endpoints, credentials and regions come only from the standard AWS configuration (environment,
profiles, `AWS_ENDPOINT_URL_S3`). Every failure surfaces as a `StorageError` with a stable code.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, NoReturn

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from s3transfer.exceptions import RetriesExceededError

from labelsift.errors import CannotProceed

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"}
)

S3_SCHEME = "s3://"
DEFAULT_REGION = "us-east-1"
TMP_PREFIX = ".labelsift-"
TMP_SUFFIX = ".tmp"

_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "AuthFailure",
    }
)
_ACCESS_CODES = frozenset({"AccessDenied", "403", "AllAccessDisabled", "AccountProblem", "Forbidden"})
_MISSING_KEY_CODES = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchVersion"})
_THROTTLE_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "503"})
_UNAVAILABLE_CODES = frozenset({"InternalError", "ServiceUnavailable", "500", "502", "504"})


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    key: str
    size: int
    etag: str | None
    version_id: str | None = None
    storage_class: str | None = None


class StorageError(CannotProceed):
    """A storage operation failed. `code` is stable; `fatal` means no further operation can succeed."""

    def __init__(self, code: str, uri: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.uri = uri
        self.message = message
        self.fatal = fatal

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.code, self.uri, self.message), {"fatal": self.fatal})


def is_s3(uri: str) -> bool:
    return uri.startswith(S3_SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    if not is_s3(uri):
        raise StorageError("InvalidUri", uri, f"{uri!r} is not an S3 URI; write it as s3://bucket/key.")
    bucket, _, key = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise StorageError("InvalidUri", uri, f"{uri!r} names no bucket; write it as s3://bucket/key.")
    return bucket, key


def _local(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


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
    base = _local(root)
    path = os.path.join(base, *parts)
    real_base = os.path.realpath(base)
    if os.path.commonpath([real_base, os.path.realpath(path)]) != real_base:
        raise _unsafe(root, key, "it resolves outside the folder through a symbolic link")
    return path


def _s3_folder(key: str) -> str:
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
            folder = _s3_folder(root_key)
            if key.startswith(folder) and len(key) > len(folder):
                return key[len(folder) :]
        raise StorageError("NotUnderRoot", uri, f"{uri!r} is not under {root!r}.")
    base, path = _local(root), _local(uri)
    if path == base:
        return os.path.basename(path)
    rel = os.path.relpath(path, base)
    if rel == ".." or rel.startswith(".." + os.sep):
        raise StorageError("NotUnderRoot", uri, f"{uri!r} is not under {root!r}.")
    return rel.replace(os.sep, "/")


def _is_image(key: str) -> bool:
    return PurePosixPath(key).suffix.lower() in IMAGE_EXTENSIONS


def _strip_etag(etag: str | None) -> str | None:
    return etag.strip('"') if etag else None


def _local_etag(stat: os.stat_result) -> str:
    return f"{stat.st_mtime_ns:x}-{stat.st_size:x}"


def _client_error(error: ClientError, uri: str, action: str) -> StorageError:
    info = error.response.get("Error", {})
    code = str(
        info.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "Unknown")
    )
    detail = info.get("Message") or ""
    bucket = repr(str(info.get("BucketName") or (split_s3(uri)[0] if is_s3(uri) else "")))
    if code == "NoSuchBucket":
        return StorageError(
            "NoSuchBucket",
            uri,
            f"Could not {action} {uri}: bucket {bucket} does not exist at the configured S3 endpoint. "
            "Check the bucket name, the AWS account or profile in use, and AWS_ENDPOINT_URL_S3 if set.",
            fatal=True,
        )
    if code in _MISSING_KEY_CODES:
        return StorageError(
            "NoSuchKey",
            uri,
            f"Could not {action} {uri}: no such object. It may have been deleted or renamed since it was "
            "listed; list the source again.",
        )
    if code in _CREDENTIAL_CODES:
        return StorageError(
            "InvalidCredentials",
            uri,
            f"Could not {action} {uri}: S3 rejected the credentials ({code}). Check AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE or the shared credentials file, and refresh expired "
            "session tokens.",
            fatal=True,
        )
    if code in _ACCESS_CODES:
        return StorageError(
            "AccessDenied",
            uri,
            f"Could not {action} {uri}: access denied. Grant the identity in use the needed S3 permission "
            f"on bucket {bucket} (s3:ListBucket, s3:GetObject, s3:PutObject), or use another profile.",
            fatal=True,
        )
    if code in ("PreconditionFailed", "412"):
        return _changed(uri, action)
    if code == "InvalidObjectState":
        return StorageError(
            "InvalidObjectState",
            uri,
            f"Could not {action} {uri}: the object is archived (e.g. Glacier or Deep Archive). Restore it "
            "first (aws s3api restore-object) or exclude it from the source.",
        )
    if code in _THROTTLE_CODES:
        return StorageError(
            "SlowDown",
            uri,
            f"Could not {action} {uri}: S3 kept throttling requests after retries. Lower the number of "
            "workers and run again; finished work is kept.",
        )
    if code in _UNAVAILABLE_CODES:
        return StorageError(
            "Unavailable",
            uri,
            f"Could not {action} {uri}: S3 answered with a server error ({code}) after retries. Try again "
            "later; finished work is kept.",
        )
    return StorageError(
        code,
        uri,
        f"Could not {action} {uri}: S3 error {code}{': ' + detail if detail else ''}.",
    )


def _botocore_error(error: BotoCoreError, uri: str, action: str) -> StorageError:
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return StorageError(
            "InvalidCredentials",
            uri,
            f"Could not {action} {uri}: no usable AWS credentials were found. Set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, choose a profile with AWS_PROFILE, or run `aws configure`.",
            fatal=True,
        )
    if isinstance(error, NoRegionError):
        return StorageError(
            "InvalidConfig",
            uri,
            f"Could not {action} {uri}: no AWS region is configured. Set AWS_DEFAULT_REGION or a region "
            "in the profile.",
            fatal=True,
        )
    if isinstance(error, ParamValidationError):
        return StorageError("InvalidUri", uri, f"Could not {action} {uri}: {error}")
    if isinstance(
        error,
        EndpointConnectionError
        | ConnectTimeoutError
        | ReadTimeoutError
        | ConnectionClosedError
        | ResponseStreamingError,
    ):
        return StorageError(
            "Unavailable",
            uri,
            f"Could not {action} {uri}: the S3 endpoint could not be reached or dropped the connection "
            f"({type(error).__name__}). Check the network and AWS_ENDPOINT_URL_S3 if set, then retry.",
        )
    return StorageError("S3Error", uri, f"Could not {action} {uri}: {type(error).__name__}: {error}")


def _os_error(error: OSError, uri: str, action: str) -> StorageError:
    if isinstance(error, FileNotFoundError):
        return StorageError(
            "NotFound", uri, f"Could not {action} {uri}: no such file or folder. Check the path."
        )
    if isinstance(error, IsADirectoryError):
        return StorageError(
            "NotFound", uri, f"Could not {action} {uri}: it is a folder, not a file. Name a file."
        )
    if isinstance(error, PermissionError):
        return StorageError(
            "AccessDenied", uri, f"Could not {action} {uri}: permission denied. Fix the file's permissions."
        )
    if error.errno == errno.ENAMETOOLONG:
        return StorageError(
            "NameTooLong",
            uri,
            f"Could not {action} {uri}: a path component is longer than the file system allows "
            "(usually 255 bytes). Choose a layout with shorter names.",
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return StorageError(
            "NoSpace",
            uri,
            f"Could not {action} {uri}: {error.strerror}. Free space or choose another destination.",
            fatal=True,
        )
    return StorageError("LocalIOError", uri, f"Could not {action} {uri}: {error.strerror or error}.")


def _raise(error: Exception, uri: str, action: str) -> NoReturn:
    if isinstance(error, RetriesExceededError) and isinstance(error.last_exception, Exception):
        _raise(error.last_exception, uri, action)
    if isinstance(error, ClientError):
        raise _client_error(error, uri, action) from error
    if isinstance(error, BotoCoreError):
        raise _botocore_error(error, uri, action) from error
    if isinstance(error, OSError):
        raise _os_error(error, uri, action) from error
    raise error


def _changed(uri: str, action: str) -> StorageError:
    return StorageError(
        "Changed",
        uri,
        f"Could not {action} {uri}: the object changed after it was listed (its etag differs). "
        "List the source again to pick up the new version.",
    )


def _get_object(client: S3Client, bucket: str, key: str, byte_range: str | None, etag: str | None) -> bytes:
    """The object's bytes (or a range of them); only if it is still `etag`, when given."""
    if byte_range is not None and etag:
        response = client.get_object(Bucket=bucket, Key=key, Range=byte_range, IfMatch=f'"{etag}"')
    elif byte_range is not None:
        response = client.get_object(Bucket=bucket, Key=key, Range=byte_range)
    elif etag:
        response = client.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
    else:
        response = client.get_object(Bucket=bucket, Key=key)
    return response["Body"].read()


def _check_local_etag(handle: Any, uri: str, etag: str | None) -> None:
    if etag and _local_etag(os.fstat(handle.fileno())) != etag:
        raise _changed(uri, "read")


def _atomic_local_write(path: str, fill: Callable[[Any], None]) -> None:
    """Write through `fill(file)` into a temporary sibling, then rename it over `path`."""
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f"{TMP_PREFIX}{secrets.token_hex(8)}{TMP_SUFFIX}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, unlike mkstemp
    try:
        with os.fdopen(fd, "wb") as handle:
            fill(handle)
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_local(path: str) -> int:
    """Delete a file, or a folder and everything in it; how many files went (0 if nothing was there)."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            count = sum(len(files) for _, _, files in os.walk(path))
            shutil.rmtree(path)
            return count
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return 1


def _walk(base: str, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Files under `base` as (relative key, entry), in the byte order S3 lists keys in.

    A folder `a` sorts as `a/`, which makes a depth-first walk yield keys in plain string order.
    """
    with os.scandir(base) as scan:
        entries = sorted(scan, key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, prefix + entry.name + "/")
        elif entry.is_file():
            yield prefix + entry.name, entry


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
                    raise _botocore_error(error, "s3://", "create an S3 client for") from error
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
            mapped = _client_error(error, uri, "find the region of")
            if mapped.code != "AccessDenied":
                raise mapped from error
        except BotoCoreError as error:
            raise _botocore_error(error, uri, "find the region of") from error
        try:
            headers = client.head_bucket(Bucket=bucket)["ResponseMetadata"]["HTTPHeaders"]
        except ClientError as error:
            headers = error.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            if "x-amz-bucket-region" not in headers:
                raise _client_error(error, uri, "find the region of") from error
        except BotoCoreError as error:
            raise _botocore_error(error, uri, "find the region of") from error
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

    def list(self, root: str, *, images_only: bool = True) -> Iterator[ObjectInfo]:
        """Every object under `root` (a bucket, prefix, folder, or single object), sorted by key.

        A root that names one object yields just that object, keyed by its base name. Folders, S3
        folder markers and (with `images_only`) files without an image extension are skipped.
        """
        entries = self._list_s3(root) if is_s3(root) else self._list_local(root)
        for info in entries:
            if not images_only or _is_image(info.key):
                yield info

    def _list_s3(self, root: str) -> Iterator[ObjectInfo]:
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
                        etag=_strip_etag(item.get("ETag")),
                        storage_class=item.get("StorageClass"),
                    )
                    return
            folder = _s3_folder(root_key)
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=folder)
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"]
                    if key.endswith("/"):
                        continue
                    yield ObjectInfo(
                        uri=f"{S3_SCHEME}{bucket}/{key}",
                        key=key[len(folder) :],
                        size=item["Size"],
                        etag=_strip_etag(item.get("ETag")),
                        storage_class=item.get("StorageClass"),
                    )
        except (ClientError, BotoCoreError) as error:
            _raise(error, root, "list")

    def _list_local(self, root: str) -> Iterator[ObjectInfo]:
        base = _local(root)
        try:
            if os.path.isfile(base):
                stat = os.stat(base)
                yield ObjectInfo(base, os.path.basename(base), stat.st_size, _local_etag(stat))
                return
            for key, entry in _walk(base, ""):
                stat = entry.stat()
                yield ObjectInfo(entry.path, key, stat.st_size, _local_etag(stat))
        except OSError as error:
            _raise(error, root, "list")

    def stat(self, uri: str) -> ObjectInfo:
        if not is_s3(uri):
            path = _local(uri)
            try:
                stat = os.stat(path)
            except OSError as error:
                _raise(error, uri, "read")
            if not os.path.isfile(path):
                raise StorageError("NotFound", uri, f"{uri} is a folder, not a file. Name a file.")
            return ObjectInfo(path, path, stat.st_size, _local_etag(stat))
        bucket, key = split_s3(uri)
        try:
            head = self._client_for(bucket).head_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as error:
            _raise(error, uri, "read")
        return ObjectInfo(
            uri=uri,
            key=key,
            size=head["ContentLength"],
            etag=_strip_etag(head.get("ETag")),
            version_id=head.get("VersionId"),
            storage_class=head.get("StorageClass") or "STANDARD",
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
                with open(_local(uri), "rb") as handle:
                    _check_local_etag(handle, uri, if_match)
                    handle.seek(start)
                    return handle.read(length)
            except OSError as error:
                _raise(error, uri, "read")
        bucket, key = split_s3(uri)
        try:
            client = self._client_for(bucket)
            return _get_object(client, bucket, key, f"bytes={start}-{start + length - 1}", if_match)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            _raise(error, uri, "read")
        except BotoCoreError as error:
            _raise(error, uri, "read")

    def read(self, uri: str, *, if_match: str | None = None) -> bytes:
        if not is_s3(uri):
            try:
                with open(_local(uri), "rb") as handle:
                    _check_local_etag(handle, uri, if_match)
                    return handle.read()
            except OSError as error:
                _raise(error, uri, "read")
        bucket, key = split_s3(uri)
        try:
            return _get_object(self._client_for(bucket), bucket, key, None, if_match)
        except (ClientError, BotoCoreError) as error:
            _raise(error, uri, "read")

    def write(self, uri: str, data: bytes) -> None:
        if not is_s3(uri):
            try:
                _atomic_local_write(_local(uri), lambda handle: handle.write(data))
            except OSError as error:
                _raise(error, uri, "write")
            return
        bucket, key = split_s3(uri)
        try:
            self._put(bucket, key, data)
        except (ClientError, BotoCoreError) as error:
            _raise(error, uri, "write")

    def _put(self, bucket: str, key: str, data: bytes) -> None:
        client = self._client_for(bucket)
        if data:
            client.put_object(Bucket=bucket, Key=key, Body=data)
        else:
            # An explicit empty body makes some S3-compatible servers (SeaweedFS) answer twice
            # and stall the pooled connection; no body at all is the same empty object.
            client.put_object(Bucket=bucket, Key=key)

    def copy(self, src: str, dst: str, *, overwrite: bool = False) -> bool:
        """Copy one object. False when `dst` already holds an object of the same size.

        A different object at `dst` raises StorageError("Exists") unless `overwrite`.
        """
        existing = self.exists(dst)
        if existing is not None:
            source = self.stat(src)
            if existing.size == source.size:
                return False
            if not overwrite:
                raise StorageError(
                    "Exists",
                    dst,
                    f"Not copying {src} to {dst}: a different object ({existing.size} bytes, the source has "
                    f"{source.size}) is already there. Choose an empty destination or allow overwriting.",
                )
        try:
            if is_s3(src) and is_s3(dst):
                self._copy_s3_to_s3(src, dst)
            elif is_s3(dst):
                bucket, key = split_s3(dst)
                with open(_local(src), "rb") as source_file:
                    if os.fstat(source_file.fileno()).st_size == 0:
                        self._put(bucket, key, b"")
                    else:
                        self._client_for(bucket).upload_fileobj(
                            source_file, bucket, key, Config=self._transfer
                        )
            elif is_s3(src):
                bucket, key = split_s3(src)
                client = self._client_for(bucket)
                _atomic_local_write(
                    _local(dst),
                    lambda handle: client.download_fileobj(bucket, key, handle, Config=self._transfer),
                )
            else:
                with open(_local(src), "rb") as source_file:
                    _atomic_local_write(_local(dst), lambda handle: shutil.copyfileobj(source_file, handle))
        except (ClientError, BotoCoreError, RetriesExceededError, OSError) as error:
            _raise(error, dst, f"copy {src} to")
        return True

    def remove(self, uri: str) -> int:
        """Delete the object or file at `uri` and everything under it as a folder; how many went."""
        if not is_s3(uri):
            try:
                return remove_local(_local(uri))
            except OSError as error:
                _raise(error, uri, "delete")
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
                _raise(error, f"{S3_SCHEME}{bucket}/{batch[0]}", "delete")
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
        src_bucket, src_key = split_s3(src)
        dst_bucket, dst_key = split_s3(dst)
        self._client_for(dst_bucket).copy(
            {"Bucket": src_bucket, "Key": src_key},
            dst_bucket,
            dst_key,
            SourceClient=self._client_for(src_bucket),
            Config=self._transfer,
        )


def storage_error(error: Exception, uri: str, action: str) -> StorageError:
    """The StorageError for a boto3/botocore or OS error met while trying to `action` `uri`
    (for modules that reach S3 or files through another library, e.g. smart-open)."""
    try:
        _raise(error, uri, action)
    except StorageError as mapped:
        return mapped
    raise AssertionError("unreachable")  # pragma: no cover
