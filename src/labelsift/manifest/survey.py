"""The first pass over a manifest: people's verdicts, where each repeated source last appears, and for
a plain local file its lines cut into byte spans for workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from labelsift.manifest.files import COMPRESSED, is_local, local_file
from labelsift.manifest.lines import (
    bounded_byte_lines,
    is_torn,
    iter_lines,
    not_utf8,
    past_bom,
    text_of,
    warn_torn,
)
from labelsift.manifest.parsing import (
    RECORD_START,
    is_verdict,
    key_of,
    parse_line,
    source_of,
    writer_form_key,
)
from labelsift.manifest.repeats import RepeatFinder
from labelsift.models import Verdict, VerdictEntry

Line = tuple[int, str, list[Verdict] | None]  # (line number, text, people's verdicts on it)


class Span(NamedTuple):
    """A run of whole lines of a plain local manifest: bytes [start, end), numbered from `first_line`."""

    start: int
    end: int
    first_line: int
    lines: int


@dataclass
class FirstPass:
    """What a first pass over a manifest found: people's verdicts (as many as people made, not as
    many as images), where each source written more than once last appears, and for a plain local
    file read with `lines_per_span`, its lines cut into `Span`s of that many."""

    verdicts: dict[str, list[Verdict]]
    last: dict[str, int]  # source -> line number of its newest record, for repeated sources only
    spans: list[Span] | None

    @property
    def plain(self) -> bool:
        """Spans exist, no record supersedes another and nobody judged one: each line stands alone."""
        return self.spans is not None and not self.verdicts and not self.last


def first_pass(uri: str, lines_per_span: int | None = None) -> FirstPass:
    """Read the manifest for what `effective_lines` must know before it yields anything.

    A fixed-size filter flags sources that may have been seen before; it has false alarms (dozens
    in a million sources), so only if it flags any does a second pass count the flagged ones and
    keep those really written more than once.
    """
    found = FirstPass({}, {}, None)
    finder = RepeatFinder()
    if lines_per_span is not None and _local_plain(uri):
        found.spans = _spanning_pass(uri, lines_per_span, found.verdicts, finder)
    if found.spans is None:
        found.verdicts.clear()
        finder = RepeatFinder()
        for line_no, text in iter_lines(uri):
            if is_verdict(text):
                _add_verdict(uri, line_no, text, found.verdicts)
            else:
                finder.add(source_of(uri, line_no, text).encode("utf-8"))
    finder.flush()
    if finder.flagged and not (found.spans is not None and _written_once(uri, finder)):
        found.last = _repeats(uri, finder.flagged, as_bytes=found.spans is not None)
    return found


def _written_once(uri: str, finder: RepeatFinder) -> bool:
    """Whether each of a few flagged sources has one record only, found by searching the file's
    bytes for its record's start (much faster than reading the lines again). Exact only when every
    record line is in the writer's form (none odd): `\\n{"source":"<source>"` then starts each of
    its lines and nothing else (JSON escapes the quotes of a string that holds it)."""
    if finder.decoded_lines or len(finder.flagged) > 16:
        return False
    path = Path(uri).expanduser()
    return all(_line_starts(path, source, limit=2) < 2 for source in finder.flagged)


def _line_starts(path: Path, source: str, *, limit: int) -> int:
    """How many lines (up to `limit`) start with `source`'s record in the writer's form, read in
    chunks of 1 MiB."""
    needle = b"\n" + RECORD_START + source.encode("utf-8", "surrogateescape") + b'"'
    found = 0
    with open(path, "rb") as stream:
        past_bom(stream)
        carry = b"\n"  # the file's start is a line's start
        while chunk := stream.read(1 << 20):
            data = carry + chunk
            at = data.find(needle)
            while at >= 0:
                found += 1
                if found >= limit:
                    return found
                at = data.find(needle, at + 1)
            carry = data[1 - len(needle) :]  # a match across the chunks' border starts in here
    return found


def _add_verdict(uri: str, line_no: int, text: str, verdicts: dict[str, list[Verdict]]) -> None:
    entry = parse_line(uri, line_no, text)
    assert isinstance(entry, VerdictEntry)
    verdicts.setdefault(entry.source, []).append(entry.verdict)


def _repeats(uri: str, maybe: set[str], *, as_bytes: bool) -> dict[str, int]:
    """source -> line of its newest record, for the sources of `maybe` written more than once."""
    wanted = {source.encode("utf-8", "surrogateescape") for source in maybe}
    seen_once: set[bytes] = set()
    last: dict[str, int] = {}
    for line_no, key in _record_keys(uri, as_bytes=as_bytes):
        if key in wanted:
            if key in seen_once:
                last[key.decode("utf-8", "surrogateescape")] = line_no
            seen_once.add(key)
    return last


def _spanning_pass(
    uri: str, lines_per_span: int, verdicts: dict[str, list[Verdict]], finder: RepeatFinder
) -> list[Span] | None:
    """The first pass over a local file in bytes, noting where every `lines_per_span` lines end;
    None (read it as text instead) when a carriage return inside a line would make the text
    reader's universal newlines number the lines differently."""
    path = local_file(uri)
    if path is None:
        return []
    spans: list[Span] = []
    start = end = 0
    first_line = line_no = 1
    with open(path, "rb") as stream:
        start = end = past_bom(stream)  # the first span starts after it
        for line_no, raw in bounded_byte_lines(uri, stream):
            if b"\r" in raw and b"\r" in raw.strip():
                return None
            if is_torn(raw):
                warn_torn(uri, line_no)
                line_no -= 1
                break
            end += len(raw)
            if (key := writer_form_key(raw)) is not None:
                finder.add(key)
            elif (key := key_of(uri, line_no, raw)) is not None:
                finder.add(key)
                finder.decoded_lines += 1
            elif text := text_of(uri, line_no, raw).strip():
                _add_verdict(uri, line_no, text, verdicts)
            if line_no - first_line + 1 == lines_per_span:
                spans.append(Span(start, end, first_line, lines_per_span))
                start, first_line = end, line_no + 1
    if end > start:
        spans.append(Span(start, end, first_line, line_no - first_line + 1))
    return spans


def _local_plain(uri: str) -> bool:
    """A local file smart-open would not decompress: its bytes are its lines."""
    return is_local(uri) and not uri.lower().endswith(COMPRESSED)


def _record_keys(uri: str, *, as_bytes: bool) -> Iterator[tuple[int, bytes]]:
    """(line number, source key) of every record line; `as_bytes` where the first pass found the
    file's byte lines to be its text lines (`_spanning_pass`: no carriage return inside a line)."""
    if not as_bytes:
        for line_no, text in iter_lines(uri):
            if not is_verdict(text):
                yield line_no, source_of(uri, line_no, text).encode("utf-8")
        return
    path = Path(uri).expanduser()
    if not path.exists():
        return
    with open(path, "rb") as stream:
        past_bom(stream)
        for line_no, raw in bounded_byte_lines(uri, stream):
            if is_torn(raw):
                return  # `iter_lines` warns about it
            key = key_of(uri, line_no, raw)
            if key is not None:
                yield line_no, key


def span_lines(uri: str, span: Span) -> list[Line]:
    """The non-blank lines of `span` of a plain manifest (`FirstPass.plain`: no verdicts in it)."""
    with open(Path(uri).expanduser(), "rb") as stream:
        stream.seek(span.start)
        data = stream.read(span.end - span.start)
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise not_utf8(uri, span.first_line + data.count(b"\n", 0, exc.start), data[exc.start]) from None
    out: list[Line] = []
    for line_no, raw in enumerate(decoded.split("\n"), start=span.first_line):
        text = raw.strip()
        if text:
            out.append((line_no, text, None))
    return out
