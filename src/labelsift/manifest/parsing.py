"""One line as a record or a verdict: telling them apart, validating, and the source key read without
decoding the line when it is in the writer's form.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from labelsift.manifest.errors import ManifestError
from labelsift.manifest.lines import iter_lines, text_of
from labelsift.models import ImageRecord, VerdictEntry

_VERDICT_PREFIX = '{"kind":"verdict"'  # how labelsift writes a verdict line (the fast check)
_KIND = '"kind"'
KIND_BYTES = b'"kind"'


def is_verdict(text: str) -> bool:
    """Whether a (stripped) manifest line is a verdict: labelsift's own start, or, in a line written
    by another tool (other key order, json.dumps spacing), a top-level `"kind": "verdict"`. A record
    has no `kind` field, so only a line naming it is decoded."""
    if text.startswith(_VERDICT_PREFIX):
        return True
    if _KIND not in text:
        return False
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # nested past Python's stack: no verdict, `head_of` names it
        return False
    return isinstance(value, dict) and value.get("kind") == "verdict"


def parse_line(uri: str, line_no: int, text: str) -> ImageRecord | VerdictEntry:
    try:
        if is_verdict(text):
            return VerdictEntry.model_validate_json(text)
        return ImageRecord.model_validate_json(text)
    except ValidationError as exc:
        raise invalid_record(uri, line_no, exc) from None


def invalid_record(uri: str, line_no: int, exc: ValidationError) -> ManifestError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'record'}: {err['msg']}" for err in exc.errors()
    )
    return ManifestError(uri, line_no, f"not a valid record ({problems})")


def head_of(uri: str, line_no: int, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(uri, line_no, f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:  # `[[[[…` a hundred thousand deep: no record nests like that
        raise ManifestError(uri, line_no, "not a record (JSON nested too deeply to read)") from None
    if not isinstance(value, dict) or not isinstance(value.get("source"), str):
        raise ManifestError(uri, line_no, "no 'source' field")
    return value


def iter_sources(uri: str) -> Iterator[str]:
    """The `source` of every line (records and verdicts) without validating the rest; a line that
    is not JSON or names no source stops with its line number (ManifestError, exit 4)."""
    for line_no, text in iter_lines(uri):
        source = head_of(uri, line_no, text)["source"]
        assert isinstance(source, str)
        yield source


_SOURCE_PREFIX = '{"source":'
_DECODER = json.JSONDecoder()


def source_of(uri: str, line_no: int, text: str) -> str:
    """The record's source, decoding only that string when the line is in the writer's key order."""
    if text.startswith(_SOURCE_PREFIX):
        try:
            source, _ = _DECODER.raw_decode(text, len(_SOURCE_PREFIX))
        except json.JSONDecodeError:
            source = None
        if isinstance(source, str):
            return source
    source = head_of(uri, line_no, text)["source"]
    assert isinstance(source, str)
    return source


RECORD_START = b'{"source":"'
_KEY_AT = len(RECORD_START)


def writer_form_key(raw: bytes) -> bytes | None:
    """A record line's source as UTF-8 when the line starts the way the writer writes it and its
    source string holds no escape (then the bytes between the quotes are the source), else None."""
    if raw.startswith(RECORD_START) and KIND_BYTES not in raw:  # a verdict may start so too
        close = raw.find(b'"', _KEY_AT)
        if close > 0 and raw.find(b"\\", _KEY_AT, close) < 0:
            return raw[_KEY_AT:close]
    return None


def key_of(uri: str, line_no: int, raw: bytes) -> bytes | None:
    """A record line's source as UTF-8 (None for a blank or verdict line), without decoding the
    line when it is in the writer's form (`writer_form_key`)."""
    key = writer_form_key(raw)
    if key is not None:
        return key
    text = text_of(uri, line_no, raw).strip()
    if not text or is_verdict(text):
        return None
    return source_of(uri, line_no, text).encode("utf-8")


def iter_raw(uri: str) -> Iterator[ImageRecord | VerdictEntry]:
    """Every line as written, in order, validated."""
    for line_no, text in iter_lines(uri):
        yield parse_line(uri, line_no, text)


def to_line(entry: ImageRecord | VerdictEntry) -> str:
    return entry.model_dump_json() + "\n"
