"""Reading a manifest's lines: bounded in length, UTF-8 checked, a byte-order mark skipped, a torn last
line told apart, a damaged compressed file named.
"""

from __future__ import annotations

import gzip
import json
import logging
import lzma
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from botocore.exceptions import BotoCoreError, ClientError

from labelsift import uri as uri_module
from labelsift.gzip_members import check_tail
from labelsift.manifest.errors import ManifestError, TruncatedManifest
from labelsift.manifest.files import compression, is_local, local_file, open_text, read_failure, target

log = logging.getLogger(__name__)


def not_utf8(uri: str, line_no: int, byte: int) -> ManifestError:
    return ManifestError(
        uri, line_no, f"not UTF-8 text (byte 0x{byte:02X}); save the manifest as UTF-8 and run again"
    )


def _check_text(uri: str, line_no: int, text: str) -> str:
    """`text` as read by `open_text`, refused if the line's bytes were not UTF-8."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise not_utf8(uri, line_no, ord(text[exc.start]) - 0xDC00) from None
    return text


def text_of(uri: str, line_no: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(uri, line_no, raw[exc.start]) from None


_DAMAGED = (EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


def cut_short(uri: str, lines: int, last: str | None, *, damaged: bool = False) -> TruncatedManifest:
    """The error for a compressed manifest that stops after `lines` whole lines (`last` the last)."""
    where = f"after line {lines}" if lines else "before its first line"
    source = _quiet_source(last) if last else None
    plain = uri[: -len(compression(uri))] if compression(uri) else uri + ".jsonl"
    return TruncatedManifest(
        f"{uri}: the compressed data {'is damaged' if damaged else 'ends early'} {where}"
        + (f" (the record of {source})" if source else "")
        + ". The file was cut short (a copy or download that stopped, a full disk) or damaged, so "
        "labelsift reads no further and writes nothing to it. If it is a copy, copy it again. To keep "
        f"the {lines} whole line(s) before the cut: `gzip -dc {uri} > {plain}` (gzip warns about the "
        f"end), then use {plain}: a scan appending to it cuts the partial last line and goes on."
    )


def _quiet_source(text: str) -> str | None:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    source = value.get("source") if isinstance(value, dict) else None
    return uri_module.shown(source) if isinstance(source, str) else None


MAX_LINE = 64 << 20  # a record is kilobytes (a thousand labels with boxes: a few hundred KiB)


def too_long(uri: str, line_no: int) -> ManifestError:
    return ManifestError(
        uri, line_no,
        f"longer than {MAX_LINE >> 20} MiB, which no record comes near (labelsift reads no further "
        "into it, and cuts nothing of it): the file is not a manifest, or that line was damaged",
    )  # fmt: skip


def bounded_byte_lines(uri: str, stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """(line number, line) of `stream`, never holding more than `MAX_LINE` of one line: a longer
    line (a file that is not a manifest, a damaged one) is a ManifestError naming it."""
    line_no = 0
    while raw := stream.readline(MAX_LINE + 1):
        line_no += 1
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            raise too_long(uri, line_no)
        yield line_no, raw


def bounded_text_lines(uri: str, stream: IO[str]) -> Iterator[tuple[int, str]]:
    """`bounded_byte_lines` for a text stream, read in chunks and split here: `TextIOWrapper`'s
    `readline(limit)` still decodes the whole line before cutting it."""
    line_no = 0
    parts: list[str] = []
    pending = 0
    while chunk := stream.read(1 << 20):
        at = 0
        while (end := chunk.find("\n", at)) >= 0:
            piece = chunk[at : end + 1]
            if parts:
                piece = "".join([*parts, piece])
                parts.clear()
                pending = 0
            line_no += 1
            if len(piece) > MAX_LINE + 1:
                raise too_long(uri, line_no)
            yield line_no, piece[1:] if line_no == 1 and piece.startswith(_BOM) else piece
            at = end + 1
        if at < len(chunk):
            parts.append(chunk[at:])
            pending += len(chunk) - at
            if pending > MAX_LINE:
                raise too_long(uri, line_no + 1)
    if parts:
        last = "".join(parts)
        yield line_no + 1, last[1:] if line_no == 0 and last.startswith(_BOM) else last


_BOM = "\ufeff"  # an editor's "UTF-8 with BOM": not part of the first line
_BOM_BYTES = _BOM.encode("utf-8")


def past_bom(stream: IO[bytes]) -> int:
    """Position `stream` (at its start) after a byte-order mark, if it has one; returns where."""
    if stream.read(len(_BOM_BYTES)) == _BOM_BYTES:
        return len(_BOM_BYTES)
    stream.seek(0)
    return 0


def iter_lines(uri: str) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) of every complete line; a torn last line is skipped with a warning.

    A compressed manifest that stops early or is damaged raises TruncatedManifest (exit 4) naming
    the last whole line; a manifest that cannot be opened raises a CannotProceed (exit 3) naming it.
    """
    if is_local(uri) and local_file(uri) is None:
        target(uri)  # a refused URI is refused even when no such file exists
        return
    last = (0, "")
    try:
        with open_text(uri, "r") as stream:
            for line_no, raw in bounded_text_lines(uri, stream):
                if is_torn(raw):
                    warn_torn(uri, line_no)
                    return
                text = raw.strip()
                if text:
                    last = (line_no, text)
                    yield line_no, _check_text(uri, line_no, text)
    except _DAMAGED as exc:
        raise _damaged(uri, last, damaged=not isinstance(exc, EOFError)) from None
    except (ClientError, BotoCoreError, OSError) as exc:
        if compression(uri) and isinstance(exc, OSError) and exc.errno is None and exc.__cause__ is None:
            raise _damaged(uri, last, damaged=True) from None  # bz2: "Invalid data stream"
        raise read_failure(uri, exc) from exc


def _damaged(uri: str, last_yielded: tuple[int, str], *, damaged: bool) -> TruncatedManifest:
    """The decompressor fails a chunk ahead of the lines read: for a local `.gz` the last whole
    line is found by decompressing again (`check_tail`), elsewhere the last line read is named."""
    if is_local(uri) and compression(uri) == ".gz":
        return gzip_refusal(uri, Path(uri).expanduser())
    return cut_short(uri, last_yielded[0], last_yielded[1], damaged=damaged)


def gzip_refusal(uri: str, path: Path) -> TruncatedManifest:
    """Why the local `.gz` at `path` cannot be read or appended to, from decompressing it."""
    with path.open("rb") as stream:
        start = stream.read(2)
    if start and start != b"\x1f\x8b":
        return TruncatedManifest(
            f"{uri} is not gzip data although its name ends in .gz (it starts with {start!r}). If it is "
            f"a plain manifest, rename it to {uri[:-3]}; labelsift writes nothing to it as it is."
        )
    tail = check_tail(path)
    last_line = tail.last_line.decode("utf-8", "replace")
    if tail.corrupt is None and tail.torn and not tail.torn_lines:
        source = _quiet_source(last_line)
        return TruncatedManifest(
            f"{uri} ends in a torn gzip member after line {tail.lines}"
            + (f" (the record of {source})" if source else "")
            + ": a run was killed while appending to it. Rerun that scan (or any command that "
            "appends to it): it cuts the torn member and goes on; only the record being written is lost."
        )
    return cut_short(uri, tail.lines, last_line, damaged=tail.corrupt is not None)


def parses(text: str | bytes) -> bool:
    try:
        json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return False
    return True


def is_torn(raw: str | bytes) -> bool:
    """Whether a line as read (newline kept) is the torn last line a killed writer leaves: no
    newline, and not whole JSON (a last line someone saved without a newline is still read)."""
    ended = raw.endswith(b"\n") if isinstance(raw, bytes) else raw.endswith("\n")
    return not ended and not parses(raw)


def warn_torn(uri: str, line_no: int) -> None:
    log.warning("%s: line %d is torn (a killed run was writing it); ignoring it", uri, line_no)
