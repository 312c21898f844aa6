"""Appending to a `.gz` manifest: each appended line is a gzip member of its own.

gzip readers (Python's `gzip`, `zcat`, smart-open) read concatenated members as one stream, so a
`.gz` manifest grows exactly like a plain one: one whole member per record, written in a single
`write`. A process killed while writing leaves at most a torn last member, never plain text on
compressed bytes. `labelsift merge m.jsonl.gz -o m2.jsonl.gz` recompresses it into one member.

`check_tail` finds where the last whole member ends by decompressing (a member has no marker one
could find from the end), so a repair cuts at a member's boundary, never inside compressed data.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def member(text: str) -> bytes:
    """`text` as one gzip member (no timestamp: the same line gives the same bytes)."""
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


@dataclass(frozen=True)
class GzipTail:
    """What decompressing a `.gz` file found.

    `whole_end`: the byte where the last whole member ends; `torn`: bytes after it that do not
    finish a member (0 when the file is whole); `torn_lines`: complete lines inside those torn
    bytes (0: only part of one line is lost, what a killed append leaves). `lines`: every complete
    line that decompresses, `last_line` the last of them (what `gzip -dc` would recover).
    `corrupt`: why the bytes after `whole_end` are not gzip data at all.
    """

    whole_end: int
    torn: int
    torn_lines: int
    lines: int
    last_line: bytes
    corrupt: str | None = None


class _Lines:
    """Counts complete lines in a decompressed stream and keeps the last one (its last 64 KiB)."""

    def __init__(self) -> None:
        self.count = 0
        self.last = b""
        self._carry = b""

    def feed(self, data: bytes) -> None:
        head, newline, tail = data.rpartition(b"\n")
        if not newline:
            self._carry = (self._carry + data)[-(1 << 16) :]
            return
        self.count += data.count(b"\n")
        line = head.rpartition(b"\n")[2] if b"\n" in head else self._carry + head
        self.last = line[-(1 << 16) :]
        self._carry = tail[-(1 << 16) :]


_MAGIC = b"\x1f\x8b\x08"  # a gzip member's first bytes (deflate)


def tail_is_whole(path: Path, window: int = 1 << 20) -> bool:
    """A quick check, reading only the file's last `window` bytes: True when, from one of the last
    member headers found there, every member decompresses whole up to the end of the file (CRC and
    length checked). False means "not proven": `check_tail` then decides, reading everything.
    Damage before the tail is not looked for here; every reader finds it (exit 4)."""
    size = path.stat().st_size
    if size == 0:
        return True
    with path.open("rb") as stream:
        stream.seek(max(0, size - window))
        tail = stream.read()
    at = len(tail)
    for _ in range(64):
        at = tail.rfind(_MAGIC, 0, at)
        if at < 0:
            return False
        if _whole_members(tail[at:]):
            return True
    return False


def _whole_members(data: bytes) -> bool:
    while data:
        decompressor = zlib.decompressobj(_GZIP_WBITS)
        pending = data
        try:
            while pending and not decompressor.eof:
                decompressor.decompress(pending, _CHUNK)  # output dropped: memory stays bounded
                pending = decompressor.unconsumed_tail
        except zlib.error:
            return False
        if not decompressor.eof:
            return False
        data = decompressor.unused_data
    return True


def check_tail(path: Path) -> GzipTail:
    """Decompress `path` member by member (memory bounded) and say where it stops being whole."""
    lines = _Lines()
    decompressor = zlib.decompressobj(_GZIP_WBITS)
    whole_end = consumed = 0
    lines_at_member_start = 0
    in_member = False
    with path.open("rb") as stream:
        pending = b""
        while True:
            if not pending:
                pending = stream.read(_CHUNK)
                if not pending:
                    if in_member:  # the input ran out: drain what zlib still holds
                        lines.feed(decompressor.flush())
                    break
            try:
                out = decompressor.decompress(pending, _CHUNK)
            except zlib.error as exc:
                return GzipTail(
                    whole_end, consumed - whole_end, lines.count - lines_at_member_start,
                    lines.count, lines.last, str(exc),
                )  # fmt: skip
            consumed += len(pending) - len(decompressor.unconsumed_tail) - len(decompressor.unused_data)
            in_member = True
            lines.feed(out)
            if decompressor.eof:
                whole_end, lines_at_member_start, in_member = consumed, lines.count, False
                pending = decompressor.unused_data
                decompressor = zlib.decompressobj(_GZIP_WBITS)
            else:
                pending = decompressor.unconsumed_tail
    if not in_member or decompressor.eof:
        return GzipTail(consumed, 0, 0, lines.count, lines.last)
    return GzipTail(
        whole_end, consumed - whole_end, lines.count - lines_at_member_start, lines.count, lines.last
    )
