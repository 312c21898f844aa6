"""Cutting a torn last line (or gzip member) that a killed writer left, and nothing that is not its own."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import IO

from labelsift.gzip_members import check_tail, tail_is_whole
from labelsift.manifest.errors import ManifestError
from labelsift.manifest.files import compression, require_appendable
from labelsift.manifest.lines import MAX_LINE, gzip_refusal, parses, too_long

log = logging.getLogger(__name__)


def repair(path: str | Path) -> int:
    """Cut a torn last line (or, for `.gz`, a torn last member) off a local manifest; returns how
    many bytes were removed. A `.gz` that is damaged, or cut short anywhere but inside its last
    line, is refused (TruncatedManifest, exit 4): cutting it would lose whole records."""
    target = Path(path).expanduser()
    if not target.exists() or target.stat().st_size == 0:
        return 0
    require_appendable(target)
    if compression(target.name) == ".gz":
        return _repair_gzip(target)
    return _repair_plain(target)


def _repair_gzip(target: Path) -> int:
    if tail_is_whole(target):
        return 0
    tail = check_tail(target)
    if tail.corrupt is None and tail.torn == 0:
        return 0
    if tail.corrupt is not None or tail.torn_lines:
        raise gzip_refusal(str(target), target)
    with target.open("rb+") as stream:
        stream.truncate(tail.whole_end)
    log.warning(
        "%s: removed a torn last gzip member (%d bytes, part of one line) left by a run that was "
        "killed while writing it; that image will be scanned again",
        target,
        tail.torn,
    )
    return tail.torn


def _repair_plain(target: Path) -> int:
    with target.open("rb+") as stream:
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(size - 1)
        if stream.read(1) == b"\n":
            return 0
        block = 1 << 16
        position = size
        cut = 0
        while position > 0:
            if size - position > MAX_LINE:  # no killed run leaves that much of one line: not ours
                raise too_long(str(target), _lines_before(stream, position) + 1)
            start = max(0, position - block)
            stream.seek(start)
            chunk = stream.read(position - start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                cut = start + newline + 1
                break
            position = start
        if size - cut > MAX_LINE:
            raise too_long(str(target), _lines_before(stream, cut) + 1)
        stream.seek(cut)
        torn = stream.read()
        if parses(torn.decode("utf-8", errors="replace")):
            stream.write(b"\n")
            log.warning("%s: the last line had no newline; added one", target)
            return 0
        if not _written_by_us(torn):
            raise ManifestError(
                str(target), _lines_before(stream, cut) + 1,
                f"the file ends in {len(torn)} bytes without a newline that are not part of a record "
                "labelsift writes (a killed run leaves the start of one, `{\"source\":…`), so nothing "
                "is cut. If this is a manifest, end that line with a newline or delete it; if it is "
                "not (a gzip manifest named .jsonl: rename it .jsonl.gz), give -o another file",
            )  # fmt: skip
        stream.truncate(cut)
    log.warning(
        "%s: removed a torn last line (%d bytes) left by a run that was killed while writing it; "
        "that image will be scanned again",
        target,
        len(torn),
    )
    return len(torn)


_LINE_STARTS = (b'{"source":', b'{"kind":')  # how the writer starts each line (spaces aside)


def _written_by_us(torn: bytes) -> bool:
    """Whether `torn` (a last line without newline) can be what a killed writer left: the start of
    a record or verdict line (JSON spacing aside). Anything else (compressed bytes, someone's text)
    is not labelsift's to cut."""
    head = torn[:64].translate(None, b" \t\r")
    if not head:  # only blanks: nothing is lost by cutting them
        return True
    return any(head.startswith(start) or start.startswith(head) for start in _LINE_STARTS)


def _lines_before(stream: IO[bytes], end: int) -> int:
    """How many newlines the first `end` bytes of `stream` hold (read in chunks)."""
    stream.seek(0)
    count = 0
    while end > 0 and (chunk := stream.read(min(end, 1 << 20))):
        count += chunk.count(b"\n")
        end -= len(chunk)
    return count
