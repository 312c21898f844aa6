"""The effective records of a manifest: the newest record per source, people's verdicts folded in,
parsed only when a selection may want them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydantic import ValidationError

from labelsift.manifest.lines import iter_lines
from labelsift.manifest.parsing import invalid_record, is_verdict, parse_line, source_of
from labelsift.manifest.survey import FirstPass, Line, first_pass
from labelsift.models import ImageRecord, Verdict
from labelsift.views import RECORD_VIEW, RecordView


def effective_lines(uri: str, first: FirstPass | None = None) -> Iterator[Line]:
    """(line number, text, people's verdicts) of each record not superseded by a later one.

    The first pass (`first_pass`, or the one given) collects verdict lines and finds where each
    repeated source last appears; this pass yields the winners. Memory stays flat (as many entries
    as verdicts and repeated sources, not as records).
    """
    found = first if first is not None else first_pass(uri)
    verdicts, last = found.verdicts, found.last
    for line_no, text in iter_lines(uri):
        if is_verdict(text):
            continue
        if last or verdicts:
            source = source_of(uri, line_no, text)
            if last.get(source, line_no) != line_no:
                continue
            yield line_no, text, verdicts.get(source)
        else:
            yield line_no, text, None


def _record(uri: str, line_no: int, text: str, verdicts: list[Verdict] | None) -> ImageRecord:
    entry = parse_line(uri, line_no, text)
    assert isinstance(entry, ImageRecord)
    return entry.model_copy(update={"review": [*entry.review, *verdicts]}) if verdicts else entry


def iter_records(uri: str) -> Iterator[ImageRecord]:
    """Stream the effective records: the newest record per source, people's verdicts folded in."""
    for line_no, text, verdicts in effective_lines(uri):
        yield _record(uri, line_no, text, verdicts)


def _plain(word: str) -> bool:
    return word.isascii() and word.isprintable() and '"' not in word and "\\" not in word


def _view(uri: str, line_no: int, text: str, verdicts: list[Verdict] | None) -> RecordView:
    try:
        view = RECORD_VIEW.validate_json(text)
    except ValidationError as exc:
        raise invalid_record(uri, line_no, exc) from None
    if verdicts:
        view["review"] = [*view["review"], *verdicts]
    return view


def iter_records_mentioning(uri: str, words: Iterable[str]) -> Iterator[RecordView | None]:
    """The views (`views.RecordView`) of the effective records, as exports read them; a record
    whose line names none of `words` (case-insensitively) and has no verdict is not parsed: None
    stands in for it (see `records_from`)."""
    return records_from(uri, effective_lines(uri), words)


def records_from(uri: str, lines: Iterable[Line], words: Iterable[str]) -> Iterator[RecordView | None]:
    """The record views of `lines` (from `effective_lines(uri)`), parsing only those that name a word.

    For selections over a few labels in a big manifest most records name none of them, and
    skipping their validation is most of an export's time. A line with JSON escapes (or a word
    JSON would escape) is always parsed, so no record that could match is ever passed over.
    """
    wanted = [word.lower() for word in words]
    check = bool(wanted) and all(_plain(word) for word in wanted)
    for line_no, text, verdicts in lines:
        if check and not verdicts and "\\u" not in text:
            lowered = text.lower()
            for word in wanted:  # a loop, not any(): no generator per line on the hot path
                if word in lowered:
                    break
            else:
                yield None
                continue
        yield _view(uri, line_no, text, verdicts)
