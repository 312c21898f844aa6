"""Reading S3 objects: a GET pinned to the etag a listing saw, streamed within a byte limit."""

from __future__ import annotations

import tempfile
from typing import IO, TYPE_CHECKING, Any

from labelsift.storage.errors import StorageError, too_large_error

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef


READ_CHUNK = 1024 * 1024


def get_object_bytes(
    client: S3Client, bucket: str, key: str, byte_range: str | None, etag: str | None
) -> bytes:
    """The object's bytes (or a range of them); only if it is still `etag`, when given."""
    return get_object_response(client, bucket, key, byte_range, etag)["Body"].read()


def get_object_response(
    client: S3Client, bucket: str, key: str, byte_range: str | None, etag: str | None
) -> GetObjectOutputTypeDef:
    """The GetObject answer, body unread (see `get_object_bytes`)."""
    if byte_range is not None and etag:
        response = client.get_object(Bucket=bucket, Key=key, Range=byte_range, IfMatch=f'"{etag}"')
    elif byte_range is not None:
        response = client.get_object(Bucket=bucket, Key=key, Range=byte_range)
    elif etag:
        response = client.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
    else:
        response = client.get_object(Bucket=bucket, Key=key)
    return response


def stream_into(body: Any, out: IO[bytes], uri: str, limit: int | None) -> None:
    """Copy a StreamingBody into `out` in chunks, stopping with TooLarge past `limit` bytes."""
    written = 0
    try:
        while chunk := body.read(READ_CHUNK):
            written += len(chunk)
            if limit is not None and written > limit:
                raise too_large_error(uri, written, limit)
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
