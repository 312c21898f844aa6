"""A string from the user or a manifest becomes a location once, here: an S3 object or prefix, or
a local path. Everything else (http(s) URLs, presigned URLs, other schemes, a collapsed `s3:/`)
is refused with a `UsageError` that says how to write it instead.

Messages never repeat a URL's query: a presigned URL carries credentials there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from labelsift.errors import UsageError

S3_SCHEME = "s3://"
_PRESIGN_PARAMS = frozenset(
    {"x-amz-signature", "x-amz-credential", "x-amz-security-token", "signature", "awsaccesskeyid"}
)


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"{S3_SCHEME}{self.bucket}/{self.key}"

    def __str__(self) -> str:
        return self.uri


@dataclass(frozen=True)
class LocalLocation:
    path: Path  # absolute, user expanded; not resolved (a symlink stays a symlink)

    @property
    def uri(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return self.uri


Location = S3Location | LocalLocation


def shown(text: str) -> str:
    """`text` safe to print: a URL's query (where presigned credentials live) is cut off."""
    head, qmark, _ = text.partition("?")
    return f"{head}?…" if qmark and "://" in head else text


def _refuse_credentials(text: str, what: str) -> None:
    _, sep, rest = text.partition("://")
    if not sep:
        return
    _, qmark, query = rest.partition("?")
    params = {part.split("=", 1)[0].lower() for part in query.split("&")} if qmark else set()
    if params & _PRESIGN_PARAMS:
        raise UsageError(
            f"{shown(text)}: this {what} looks like a presigned URL; its query carries credentials, which "
            "labelsift never records or prints. Give the object as s3://bucket/key (credentials come "
            "from the AWS configuration), or download it to a folder first."
        )


def _refuse_not_utf8(text: str, what: str) -> None:
    """A name whose bytes are not UTF-8 (Python gives them as lone surrogates) cannot be recorded
    in a manifest or a receipt (UTF-8 JSON), nor be an S3 key: UsageError naming it printably."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        printable = os.fsencode(text).decode("utf-8", "backslashreplace")
        byte = ord(text[exc.start]) - 0xDC00 if 0xDC80 <= ord(text[exc.start]) <= 0xDCFF else None
        which = f" (byte 0x{byte:02X})" if byte is not None else ""
        raise UsageError(
            f"{printable!r}: this {what} is not UTF-8 text{which}; labelsift records every path as "
            "UTF-8 in its manifests and receipts. Rename it to UTF-8 (e.g. `convmv -f latin1 -t utf8`) "
            "and run again."
        ) from None


def parse(text: str, *, what: str = "path") -> Location:
    """The location `text` names; `what` ("source", "manifest", "destination") words the errors."""
    if not text or not text.strip():
        raise UsageError(f"an empty {what}: give s3://bucket/prefix or a local path.")
    _refuse_not_utf8(text, what)
    _refuse_credentials(text, what)
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() == "s3":
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise UsageError(f"{shown(text)!r} names no bucket: write the {what} as s3://bucket/key.")
        return S3Location(bucket, key)
    if sep:
        raise UsageError(
            f"{shown(text)}: labelsift reads and writes s3://bucket/key URIs and local paths, not "
            f"{scheme}:// URLs. Give the {what} as s3://bucket/key, or download it to a local path."
        )
    if text.lower().startswith("s3:") and not text.lower().startswith("s3://"):
        raise UsageError(
            f"{text!r}: did you mean s3://{text[3:].lstrip('/')}? An S3 {what} is written s3://bucket/key."
        )
    path = os.path.abspath(os.path.expanduser(text))
    if path.startswith("//"):  # POSIX keeps exactly two leading slashes; on Linux it is one
        path = "/" + path.lstrip("/")
    return LocalLocation(Path(path))


def inside(outer: Location, inner: Location) -> bool:
    """Whether `inner` is `outer` or lies under it, as a listing of `outer` would reach it (an S3
    prefix is a folder: `s3://b/raw` holds `raw/x`, not `rawhits/x`; local paths through links)."""
    if isinstance(outer, S3Location) or isinstance(inner, S3Location):
        if not (isinstance(outer, S3Location) and isinstance(inner, S3Location)):
            return False
        if outer.bucket != inner.bucket:
            return False
        folder = outer.key if not outer.key or outer.key.endswith("/") else outer.key + "/"
        return inner.key == outer.key or (inner.key.rstrip("/") + "/").startswith(folder)
    real_outer, real_inner = os.path.realpath(outer.path), os.path.realpath(inner.path)
    return os.path.commonpath([real_outer, real_inner]) == real_outer


class NotCanonical(UsageError):
    """A manifest's source that is not in the form a scan records (see `parse_recorded`)."""


def parse_recorded(text: str) -> Location:
    """The location a manifest record's `source` names, refusing what no scan writes.

    A scan records local sources as absolute, normalised paths and S3 sources as s3://bucket/key.
    A source from someone else's manifest that is relative, has `.` or `..` segments, a doubled
    `/`, a NUL byte or a trailing `/` could name a file outside what was scanned
    (`/data/../../etc/hostname`): `NotCanonical`, an error per record, not a reason to stop.
    S3 keys are kept as they are (S3 allows `..` in keys); where they land locally is
    `labelsift.storage.join`'s to check.
    """
    location = parse(text, what="source")
    if isinstance(location, S3Location):
        if not location.key or location.key.endswith("/"):
            raise NotCanonical(f"{shown(text)}: a recorded S3 source names an object: s3://bucket/key.")
        return location
    why = _not_canonical(text)
    if why:
        raise NotCanonical(
            f"{text!r}: a recorded local source must be an absolute, normalised path ({why}); a scan "
            "never records one like this. The manifest was edited or written by another tool: fix the "
            "line or rescan the folder."
        )
    return location


def _not_canonical(text: str) -> str | None:
    if "\0" in text:
        return "it contains a NUL byte"
    if not text.startswith("/"):
        return "it is relative"
    if text.endswith("/") or "//" in text:
        return "it has an empty segment"
    segments = text.split("/")[1:]
    if "." in segments or ".." in segments:
        return "it has a '.' or '..' segment"
    return None


def is_s3(text: str) -> bool:
    return text.startswith(S3_SCHEME)


def same_target(a: Location, b: Location) -> bool:
    """Whether `a` and `b` are the same file or object (hard links and symlinks count as the same)."""
    if isinstance(a, S3Location) or isinstance(b, S3Location):
        return a == b
    try:
        return os.path.samefile(a.path, b.path)
    except OSError:
        return os.path.realpath(a.path) == os.path.realpath(b.path)
