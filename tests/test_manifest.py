import gzip
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from labelsift.manifest import (
    ManifestError,
    ManifestWriter,
    append_verdict,
    build_index,
    effective_lines,
    first_pass,
    iter_raw,
    iter_records,
    iter_records_mentioning,
    merge,
    span_lines,
    write_records,
)
from labelsift.manifest.repeats import RepeatFinder, SeenFilter
from labelsift.manifest.survey import _line_starts, _written_once
from labelsift.models import DetectorInfo, ImageRecord, Label, Reason, ScanStatus, Verdict

DETECTOR = DetectorInfo(name="local", model_version="1")
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def labeled(source: str, *, at: datetime = T0, label: str = "Bird", etag: str = "e1") -> ImageRecord:
    return ImageRecord(
        source=source,
        etag=etag,
        status=ScanStatus.LABELED,
        detector=DETECTOR,
        labels=[Label(name=label, confidence=90.0)],
        scanned_at=at,
    )


def failed(source: str) -> ImageRecord:
    return ImageRecord(
        source=source, status=ScanStatus.ERROR, error=Reason(code="Throttled", message="slow down")
    )


def test_append_then_stream_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    with ManifestWriter(path) as writer:
        for i in range(50):
            writer.append(labeled(f"img/{i:03}.jpg"))
    assert [r.source for r in iter_records(str(path))] == [f"img/{i:03}.jpg" for i in range(50)]
    assert all(line.endswith("}") for line in path.read_text().splitlines())


def test_a_torn_last_line_is_skipped_by_readers_and_cut_by_the_next_writer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "m.jsonl"
    write_records(str(path), [labeled("a.jpg"), labeled("b.jpg")])
    whole = path.read_bytes()
    torn = labeled("c.jpg").model_dump_json()[:37]
    path.write_bytes(whole + torn.encode())
    with caplog.at_level(logging.WARNING):
        assert [r.source for r in iter_records(str(path))] == ["a.jpg", "b.jpg"]
    assert "torn" in caplog.text
    with ManifestWriter(path) as writer:
        writer.append(labeled("c.jpg"))
    assert path.read_bytes().startswith(whole)
    assert [r.source for r in iter_records(str(path))] == ["a.jpg", "b.jpg", "c.jpg"]
    assert "removed a torn last line" in caplog.text


def test_a_later_record_of_the_same_source_supersedes_the_earlier(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    write_records(str(path), [failed("a.jpg"), labeled("b.jpg"), labeled("a.jpg")])
    records = list(iter_records(str(path)))
    assert [(r.source, r.status) for r in records] == [
        ("b.jpg", ScanStatus.LABELED),
        ("a.jpg", ScanStatus.LABELED),
    ]
    with build_index(str(path)) as index:
        assert index.get("a.jpg") == ("e1", ScanStatus.LABELED, None)
        assert index.get("missing.jpg") is None
        assert index.count() == 2


def test_verdicts_are_folded_into_their_records(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    write_records(str(path), [labeled("a.jpg"), labeled("b.jpg")])
    append_verdict(path, "b.jpg", Verdict(label="Bird", accepted=False, who="ana"))
    append_verdict(path, "b.jpg", Verdict(label="Bird", accepted=True, who="ben"))
    by_source = {r.source: r for r in iter_records(str(path))}
    assert by_source["a.jpg"].review == []
    assert [(v.who, v.accepted) for v in by_source["b.jpg"].review] == [("ana", False), ("ben", True)]
    kinds = [type(entry).__name__ for entry in iter_raw(str(path))]
    assert kinds == ["ImageRecord", "ImageRecord", "VerdictEntry", "VerdictEntry"]


def test_gzip_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl.gz"
    write_records(str(path), [labeled(f"{i}.jpg") for i in range(10)])
    with gzip.open(path, "rt") as stream:
        assert json.loads(stream.readline())["source"] == "0.jpg"
    assert len(list(iter_records(str(path)))) == 10


def test_an_invalid_line_names_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    write_records(str(path), [labeled("a.jpg")])
    with path.open("a") as stream:
        stream.write('{"source": "b.jpg", "status": "labeled", "width": -4}\n')
    with pytest.raises(ManifestError, match=r"line 2: .*width"):
        list(iter_records(str(path)))


def test_merge_keeps_the_newest_record_per_source_and_every_verdict(tmp_path: Path) -> None:
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    write_records(str(old), [labeled("a.jpg", label="Cat"), labeled("b.jpg", at=T0 + timedelta(days=2))])
    write_records(str(new), [labeled("a.jpg", at=T0 + timedelta(days=1), label="Dog"), labeled("b.jpg")])
    append_verdict(old, "a.jpg", Verdict(label="Dog", accepted=True))
    out = tmp_path / "merged.jsonl.gz"
    result = merge([str(old), str(new)], str(out))
    assert (result.records, result.verdicts, result.superseded) == (2, 1, 2)
    merged = {r.source: r for r in iter_records(str(out))}
    assert merged["a.jpg"].labels[0].name == "Dog"
    assert merged["b.jpg"].scanned_at == T0 + timedelta(days=2)
    assert len(merged["a.jpg"].review) == 1


def test_manifest_on_s3_round_trips(aws_env: None, bucket: str) -> None:
    uri = f"s3://{bucket}/manifests/run one.jsonl.gz"
    write_records(uri, [labeled(f"s3://{bucket}/{i}.jpg") for i in range(25)])
    assert [r.source for r in iter_records(uri)] == [f"s3://{bucket}/{i}.jpg" for i in range(25)]
    merged = f"s3://{bucket}/manifests/merged.jsonl"
    assert merge([uri, uri], merged).records == 25


def test_writer_refuses_remote_targets() -> None:
    with pytest.raises(ValueError, match="local manifest"):
        ManifestWriter("s3://bucket/m.jsonl")


def test_records_naming_none_of_the_words_are_not_parsed_unless_judged(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    write_records(
        str(path),
        [labeled("bird.jpg", label="Bird"), labeled("cat.jpg", label="Cat"), labeled("dog.jpg", label="Dog")],
    )
    with path.open("a") as stream:  # a line another tool wrote with JSON escapes for plain letters
        stream.write('{"source":"esc.jpg","status":"labeled","detector":{"name":"local"},'
                     '"labels":[{"name":"\\u0042ird","confidence":90}]}\n')  # fmt: skip
    append_verdict(path, "dog.jpg", Verdict(label="Bird", accepted=True))
    seen = [r["source"] if r else None for r in iter_records_mentioning(str(path), ["BIRD"])]
    assert seen == ["bird.jpg", None, "dog.jpg", "esc.jpg"]
    everything = [r["source"] if r else None for r in iter_records_mentioning(str(path), ['say "bird"'])]
    assert everything == ["bird.jpg", "cat.jpg", "dog.jpg", "esc.jpg"]


def _lines_by_span(path: str, span_size: int) -> list[tuple[int, str, None]]:
    found = first_pass(path, span_size)
    assert found.plain and found.spans is not None
    return [line for span in found.spans for line in span_lines(path, span)]


def test_spans_hold_exactly_the_lines_the_text_reader_yields(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [labeled(f"s3://b/{i}.jpg").model_dump_json() for i in range(23)]
    text = "\r\n".join(lines[:5]) + "\r\n\n   \n" + "\n".join(lines[5:]) + '\n{"source":"s3://b/torn'
    path = tmp_path / "m.jsonl"
    path.write_bytes(text.encode("utf-8"))
    expected = list(effective_lines(str(path)))
    assert len(expected) == 23 and expected[-1][0] == 25  # numbered across the blank lines
    for size in (1, 4, 7, 30):
        assert _lines_by_span(str(path), size) == expected
    spans = first_pass(str(path), 4).spans
    assert spans is not None and sum(span.lines for span in spans) == 25  # the torn line is left out
    assert "line 26 is torn" in caplog.text


def test_no_spans_where_bytes_and_text_could_disagree(tmp_path: Path) -> None:
    record = labeled("s3://b/1.jpg").model_dump_json()
    inner_cr = tmp_path / "cr.jsonl"  # a bare carriage return: the text reader breaks the line there
    inner_cr.write_bytes(record.replace(",", ",\r", 1).encode() + b"\n")
    with pytest.raises(ManifestError) as as_text:
        first_pass(str(inner_cr))
    with pytest.raises(ManifestError) as with_spans:  # the bytes reader defers to the text reader
        first_pass(str(inner_cr), 10)
    assert str(with_spans.value) == str(as_text.value) and "line 2" in str(as_text.value)
    packed = tmp_path / "m.jsonl.gz"
    packed.write_bytes(gzip.compress((record + "\n").encode()))
    assert first_pass(str(packed), 10).spans is None
    assert [line[0] for line in effective_lines(str(packed), first_pass(str(packed), 10))] == [1]


def test_verdicts_or_a_repeated_source_make_a_manifest_not_plain(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    write_records(str(path), [labeled("s3://b/1.jpg"), labeled("s3://b/2.jpg")])
    assert first_pass(str(path), 10).plain
    write_records(str(path), [labeled("s3://b/1.jpg"), labeled("s3://b/2.jpg"), labeled("s3://b/1.jpg")])
    assert first_pass(str(path), 10).last == {"s3://b/1.jpg": 3} and not first_pass(str(path), 10).plain
    other = tmp_path / "v.jsonl"
    write_records(str(other), [labeled("s3://b/1.jpg")])
    append_verdict(str(other), "s3://b/1.jpg", Verdict(label="Bird", accepted=False))
    assert not first_pass(str(other), 10).plain


def test_the_seen_filter_never_misses_a_source_written_before() -> None:
    keys = [f"s3://b/{i}.jpg".encode() for i in range(3000)]
    assert SeenFilter().add_many(keys) == []  # full size: no false alarm among a few thousand
    seen = SeenFilter(words=1 << 10)  # tiny: many false alarms, but never a miss
    seen.add_many(keys[:1000])
    again = seen.add_many([keys[5], b"new", keys[999], b"new"])  # earlier batch, and twice in this one
    assert {0, 2, 3} <= set(again)


def test_a_flagged_source_is_confirmed_by_searching_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    write_records(str(path), [labeled("s3://b/1.jpg"), labeled("s3://b/2.jpg"), labeled("s3://b/1.jpg")])
    finder = RepeatFinder()
    finder.flagged = {"s3://b/2.jpg"}  # a false alarm: written once
    assert _written_once(str(path), finder)
    finder.flagged = {"s3://b/2.jpg", "s3://b/1.jpg"}  # written twice (once at the very start)
    assert not _written_once(str(path), finder)
    finder.flagged, finder.decoded_lines = {"s3://b/2.jpg"}, 1  # a line in another form: cannot tell
    assert not _written_once(str(path), finder)


@pytest.mark.parametrize("offset", [-20, -5, -1, 0, 3])
def test_the_bytes_search_finds_a_record_across_a_chunk_border(tmp_path: Path, offset: int) -> None:
    record = b'{"source":"s3://b/x.jpg","status":"labeled"}\n'
    head = b'{"source":"s3://b/pad.jpg","format":"'
    pad = head + b"a" * ((1 << 20) + offset - len(head) - 3) + b'"}\n'  # the next line starts near 1 MiB
    path = tmp_path / "m.jsonl"
    path.write_bytes(pad + record + record)
    assert _line_starts(path, "s3://b/x.jpg", limit=5) == 2
    path.write_bytes(record + pad + record)  # at the very start, then across the border
    assert _line_starts(path, "s3://b/x.jpg", limit=5) == 2
    assert _line_starts(path, "s3://b/pad.jpg", limit=5) == 1
    assert _line_starts(path, "s3://b/x.jp", limit=5) == 0  # a prefix of a source is not it


def test_old_mac_line_ends_are_read_as_text_with_repeats_found(tmp_path: Path) -> None:
    a, b = labeled("s3://b/a.jpg").model_dump_json(), labeled("s3://b/b.jpg").model_dump_json()
    path = tmp_path / "m.jsonl"
    path.write_bytes("\r".join([a, b, a]).encode() + b"\r")  # carriage returns only
    found = first_pass(str(path), 10)
    assert found.spans is None and found.last == {"s3://b/a.jpg": 3}
    assert [(n, text[:30]) for n, text, _ in effective_lines(str(path), found)] == [(2, b[:30]), (3, a[:30])]


def test_a_line_the_disk_could_not_take_whole_is_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk takes all of a line but its newline, then refuses the rest: the writer counts that
    # record as not written, so none of it may stay (the next run would keep it as a whole record).
    import errno
    import os

    from labelsift.manifest import writer as writer_module
    from labelsift.storage import StorageError

    path = tmp_path / "m.jsonl"
    write_records(str(path), [labeled("s3://b/1.jpg")])
    before = path.read_bytes()
    real_write = os.write
    calls = iter([lambda fd, data: real_write(fd, bytes(data[:-1]))])

    def full_disk(fd: int, data: memoryview) -> int:
        step = next(calls, None)
        if step is None:
            raise OSError(errno.ENOSPC, "No space left on device")
        return step(fd, data)

    with ManifestWriter(path) as writer:
        monkeypatch.setattr(writer_module.os, "write", full_disk)
        with pytest.raises(StorageError, match="No space left"):
            writer.append(labeled("s3://b/2.jpg"))
        monkeypatch.undo()
    assert path.read_bytes() == before
    assert [r.source for r in iter_records(str(path))] == ["s3://b/1.jpg"]


def test_a_gzip_member_the_disk_could_not_take_whole_is_taken_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same for a .gz manifest: a member cut short would make the whole file unreadable past it
    import errno
    import os

    from labelsift.manifest import writer as writer_module
    from labelsift.storage import StorageError

    path = tmp_path / "m.jsonl.gz"
    with ManifestWriter(path) as writer:
        writer.append(labeled("s3://b/1.jpg"))
    before = path.read_bytes()
    real_write = os.write
    calls = iter([lambda fd, data: real_write(fd, bytes(data[: len(data) // 2]))])

    def full_disk(fd: int, data: memoryview) -> int:
        step = next(calls, None)
        if step is None:
            raise OSError(errno.ENOSPC, "No space left on device")
        return step(fd, data)

    with ManifestWriter(path) as writer:
        monkeypatch.setattr(writer_module.os, "write", full_disk)
        with pytest.raises(StorageError, match="No space left"):
            writer.append(labeled("s3://b/2.jpg"))
        monkeypatch.undo()
    assert path.read_bytes() == before
    assert [r.source for r in iter_records(str(path))] == ["s3://b/1.jpg"]
    with gzip.open(path, "rt") as stream:
        assert stream.read().count("\n") == 1
