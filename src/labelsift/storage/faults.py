"""Every storage failure met, mapped to a StorageError with a stable code and what to do: S3 error
codes (one table), botocore errors and OS errors.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

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

from labelsift.storage.errors import StorageError, changed_error
from labelsift.storage.paths import is_s3, split_s3

if TYPE_CHECKING:
    pass


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


def client_error(error: ClientError, uri: str, action: str) -> StorageError:
    info = error.response.get("Error", {})
    code = str(
        info.get("Code") or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "Unknown")
    )
    if code in ("PreconditionFailed", "412"):
        return changed_error(uri, action)
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


def botocore_error(error: BotoCoreError, uri: str, action: str) -> StorageError:
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


def raise_mapped(error: Exception, uri: str, action: str) -> NoReturn:
    if isinstance(error, RetriesExceededError) and isinstance(error.last_exception, Exception):
        raise_mapped(error.last_exception, uri, action)
    if isinstance(error, ClientError):
        raise client_error(error, uri, action) from error
    if isinstance(error, BotoCoreError):
        raise botocore_error(error, uri, action) from error
    if isinstance(error, OSError):
        raise _os_error(error, uri, action) from error
    raise error


def storage_error(error: Exception, uri: str, action: str) -> StorageError:
    """The StorageError for a boto3/botocore or OS error met while trying to `action` `uri`
    (for modules that reach S3 or files through another library, e.g. smart-open)."""
    try:
        raise_mapped(error, uri, action)
    except StorageError as mapped:
        return mapped
    raise AssertionError("unreachable")  # pragma: no cover
