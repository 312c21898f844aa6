"""One interface over `s3://bucket/prefix` and local folders: list, stat, read, write, copy.

Endpoints, credentials and regions come only from the standard AWS configuration (environment,
profiles, `AWS_ENDPOINT_URL_S3`). Every failure surfaces as a `StorageError` with a stable code.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import io
import os
import secrets
import shutil
import stat as stat_module
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, TYPE_CHECKING, Any, NoReturn

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

from labelsift import imagelimits
from labelsift.errors import CannotProceed, UsageError
from labelsift.imagelimits import SPOOL_BYTES
from labelsift.listing import FOLDER_MARKER, ListingNotes, walk_local
from labelsift.uri import LocalLocation, Location, S3Location, parse, parse_recorded, shown

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"}
)

S3_SCHEME = "s3://"
DEFAULT_REGION = "us-east-1"
TMP_PREFIX = ".labelsift-"
TMP_SUFFIX = ".tmp"
# S3 user metadata on a server-side copy: the source's ETag, for when the copy's own ETag differs
# (a multipart copy's ETag depends on the part sizes and, on some servers, on the copy itself)
SOURCE_ETAG_METADATA = "labelsift-source-etag"
_HASH_CHUNK = 1024**2
READ_CHUNK = 1024 * 1024

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
    copied_from: str | None = None  # S3 only: the source ETag a copy by labelsift recorded on it


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


def _local(path: str) -> str:
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


def _check_local_source(path: str) -> None:
    """A local source to copy from: canonical, and a regular file (a FIFO would block the copy for
    ever, a device like /dev/zero never end)."""
    try:
        parse_recorded(path)
    except UsageError as exc:
        raise StorageError("UnsafeSource", path, f"Not copying {exc}") from None
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        _raise(error, path, "read")
    if not stat_module.S_ISREG(mode):
        raise StorageError(
            "NotAFile",
            path,
            f"Not copying {path}: it is not a regular file (a folder, FIFO, socket or device). "
            "A scan never records one; fix the manifest line.",
        )


def same_bytes(first: str, second: str) -> bool:
    """Whether two local files hold the same bytes, compared in chunks (never from a cache: a file
    rewritten with its old size and mtime is still compared by content)."""
    with open(first, "rb") as a, open(second, "rb") as b:
        if os.fstat(a.fileno()).st_size != os.fstat(b.fileno()).st_size:
            return False
        while True:
            chunk = a.read(_HASH_CHUNK)
            if chunk != b.read(_HASH_CHUNK):
                return False
            if not chunk:
                return True


def s3_etag_of_file(path: str, part_size: int | None = None) -> str:
    """The ETag S3 gives this file's bytes in one PUT (its MD5), or uploaded in `part_size` parts
    (the MD5 of the parts' MD5s, then `-<parts>`). Read in chunks: memory stays flat."""
    with open(path, "rb") as handle:
        if part_size is None:
            return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()
        digests: list[bytes] = []
        while True:
            part = hashlib.md5(usedforsecurity=False)
            left = part_size
            while left > 0:
                chunk = handle.read(min(_HASH_CHUNK, left))
                if not chunk:
                    break
                part.update(chunk)
                left -= len(chunk)
            if left == part_size:
                break
            digests.append(part.digest())
            if left > 0:
                break
    whole = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{whole}-{len(digests)}"


@dataclass(frozen=True)
class _S3Fault:
    """How one family of S3 error codes is reported: our code, whether no further object can
    succeed, and what to do (a template over `action`, `uri`, `bucket` and S3's `code`)."""

    codes: frozenset[str]
    code: str
    advice: str
    fatal: bool = False


_S3_FAULTS = (
    _S3Fault(
        frozenset({"NoSuchBucket"}),
        "NoSuchBucket",
        "bucket {bucket} does not exist at the configured S3 endpoint. Check the bucket name, the AWS "
        "account or profile in use, and AWS_ENDPOINT_URL_S3 if set.",
        fatal=True,
    ),
    _S3Fault(
        _MISSING_KEY_CODES,
        "NoSuchKey",
        "no such object. It may have been deleted or renamed since it was listed; list the source again.",
    ),
    _S3Fault(
        _CREDENTIAL_CODES,
        "InvalidCredentials",
        "S3 rejected the credentials ({code}). Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE "
        "or the shared credentials file, and refresh expired session tokens.",
        fatal=True,
    ),
    _S3Fault(
        _ACCESS_CODES,
        "AccessDenied",
        "access denied. Grant the identity in use the needed S3 permission on bucket {bucket} "
        "(s3:ListBucket, s3:GetObject, s3:PutObject), or use another profile.",
        fatal=True,
    ),
    _S3Fault(
        frozenset({"InvalidObjectState"}),
        "InvalidObjectState",
        "the object is archived (e.g. Glacier or Deep Archive). Restore it first (aws s3api "
        "restore-object) or exclude it from the source.",
    ),
    _S3Fault(
        _THROTTLE_CODES,
        "SlowDown",
        "S3 kept throttling requests after retries. Lower the number of workers and run again; finished "
        "work is kept.",
    ),
    _S3Fault(
        _UNAVAILABLE_CODES,
        "Unavailable",
        "S3 answered with a server error ({code}) after retries. Try again later; finished work is kept.",
    ),
)


def _client_error(error: ClientError, uri: str, action: str) -> StorageError:
    info = error.response.get("Error", {})
    code = str(
        info.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "Unknown")
    )
    if code in ("PreconditionFailed", "412"):
        return _changed(uri, action)
    bucket = repr(str(info.get("BucketName") or (split_s3(uri)[0] if is_s3(uri) else "")))
    for fault in _S3_FAULTS:
        if code in fault.codes:
            advice = fault.advice.format(bucket=bucket, code=code)
            return StorageError(fault.code, uri, f"Could not {action} {uri}: {advice}", fatal=fault.fatal)
    detail = info.get("Message") or ""
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
    if error.errno == errno.EROFS:  # no space to free: the file system takes no writes at all
        return StorageError(
            "ReadOnly",
            uri,
            f"Could not {action} {uri}: the file system there is mounted read-only. Choose a folder "
            "you can write to (or remount it read-write).",
        )
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
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
    return _get_response(client, bucket, key, byte_range, etag)["Body"].read()


def _get_response(
    client: S3Client, bucket: str, key: str, byte_range: str | None, etag: str | None
) -> GetObjectOutputTypeDef:
    """The GetObject answer, body unread (see `_get_object`)."""
    if byte_range is not None and etag:
        response = client.get_object(Bucket=bucket, Key=key, Range=byte_range, IfMatch=f'"{etag}"')
    elif byte_range is not None:
        response = client.get_object(Bucket=bucket, Key=key, Range=byte_range)
    elif etag:
        response = client.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
    else:
        response = client.get_object(Bucket=bucket, Key=key)
    return response


def _too_large(uri: str, size: int, limit: int) -> StorageError:
    return StorageError("TooLarge", uri, imagelimits.too_large_message(uri, size, limit))


def _stream_into(body: Any, out: IO[bytes], uri: str, limit: int | None) -> None:
    """Copy a StreamingBody into `out` in chunks, stopping with TooLarge past `limit` bytes."""
    written = 0
    try:
        while chunk := body.read(READ_CHUNK):
            written += len(chunk)
            if limit is not None and written > limit:
                raise _too_large(uri, written, limit)
            try:
                out.write(chunk)
            except OSError as error:  # the temporary file: a full or read-only temporary folder
                raise StorageError(
                    "SpoolFailed",
                    uri,
                    f"Could not buffer {uri} in a temporary file in {tempfile.gettempdir()} ({error}); "
                    "free space there (or point TMPDIR elsewhere), then scan again with --retry-errors.",
                ) from error
    finally:
        body.close()


def _open_regular(uri: str) -> IO[bytes]:
    """The local file opened for reading, refused unless it is a regular file: opening a FIFO
    blocks for ever, a device such as /dev/zero never ends (opened non-blocking, checked with
    fstat, then switched back to blocking reads)."""
    try:
        fd = os.open(_local(uri), os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        _raise(error, uri, "read")
    mode = os.fstat(fd).st_mode
    if stat_module.S_ISDIR(mode):  # what open() says of a folder, mapped as it always was
        os.close(fd)
        _raise(IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), _local(uri)), uri, "read")
    if not stat_module.S_ISREG(mode):
        os.close(fd)
        raise StorageError(
            "NotAFile", uri, f"Not reading {uri}: it is not a regular file (a FIFO, socket or device)."
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _open_local(uri: str, limit: int | None, if_match: str | None) -> IO[bytes]:
    """The local file opened for reading, after its etag and size checks."""
    handle = _open_regular(uri)
    try:
        _check_local_etag(handle, uri, if_match)
        size = os.fstat(handle.fileno()).st_size
        if limit is not None and size > limit:
            raise _too_large(uri, size, limit)
    except BaseException:
        handle.close()
        raise
    return handle


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
            if not images_only or _is_image(info.key):
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
                        notes.add(key, FOLDER_MARKER)
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

    def _list_local(self, root: str, notes: ListingNotes) -> Iterator[ObjectInfo]:
        # The root's own links resolved: a source is recorded by its real path, so the folder (or
        # image) scanned again through a symlink to it is known to the manifest, never paid twice.
        base = os.path.realpath(_local(root))
        try:
            if os.path.isfile(base):
                stat = os.stat(base)
                yield ObjectInfo(base, os.path.basename(base), stat.st_size, _local_etag(stat))
                return
            for key, path, stat in walk_local(base, notes):
                yield ObjectInfo(path, key, stat.st_size, _local_etag(stat))
        except OSError as error:
            _raise(error, root, "list")

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

    def read(self, uri: str, *, if_match: str | None = None, limit: int | None = None) -> bytes:
        """The whole object, streamed in chunks; over `limit` bytes: StorageError("TooLarge")."""
        with self.open_read(uri, limit=limit, if_match=if_match, into=io.BytesIO()) as handle:
            try:
                return handle.read()
            except OSError as error:
                _raise(error, uri, "read")

    def open_read(
        self, uri: str, *, limit: int | None, if_match: str | None = None, into: IO[bytes] | None = None
    ) -> IO[bytes]:
        """A readable, seekable file of the object, never whole in memory unless it is small.

        A local file is opened in place; an S3 object is streamed (`into`, by default a temporary
        file kept in memory up to `SPOOL_BYTES`, then on disk). An object over `limit` bytes raises
        StorageError("TooLarge") before it is read, or as soon as the stream passes the limit.
        """
        if not is_s3(uri):
            return _open_local(uri, limit, if_match)
        bucket, key = split_s3(uri)
        out = into if into is not None else tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115
        try:
            response = _get_response(self._client_for(bucket), bucket, key, None, if_match)
            size = response.get("ContentLength")
            if limit is not None and size is not None and size > limit:
                response["Body"].close()
                raise _too_large(uri, size, limit)
            _stream_into(response["Body"], out, uri, limit)
        except (ClientError, BotoCoreError) as error:
            out.close()
            _raise(error, uri, "read")
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return out

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
            _check_local_source(src)
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
                _raise(error, source.uri, "compare")
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
            _raise(error, local.uri, "read")

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
        """A server-side copy. One that goes multipart gets a new ETag, so it carries the source's
        ETag (and keeps the source's content type and metadata) for `same_content` to prove by."""
        src_bucket, src_key = split_s3(src)
        dst_bucket, dst_key = split_s3(dst)
        source_client = self._client_for(src_bucket)
        extra: dict[str, Any] = {}
        head = source_client.head_object(Bucket=src_bucket, Key=src_key)
        if head["ContentLength"] >= self._transfer.multipart_threshold and head.get("ETag"):
            metadata = {**(head.get("Metadata") or {}), SOURCE_ETAG_METADATA: _strip_etag(head["ETag"]) or ""}
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


def storage_error(error: Exception, uri: str, action: str) -> StorageError:
    """The StorageError for a boto3/botocore or OS error met while trying to `action` `uri`
    (for modules that reach S3 or files through another library, e.g. smart-open)."""
    try:
        _raise(error, uri, action)
    except StorageError as mapped:
        return mapped
    raise AssertionError("unreachable")  # pragma: no cover
