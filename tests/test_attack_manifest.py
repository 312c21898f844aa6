"""Attacks on manifests and scans (issue #14 follow-up): the lock file, one writer per manifest
through every name of it, manifests someone else wrote, merges, resumes.

Each test goes through the command line (typer's runner in process, or `python -m labelsift.cli`
as a real subprocess where two processes are involved), with real files and the local Rekognition
endpoint where the bill matters (its call log is the bill).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from manifest_cli import cli, said, scan_args, scan_holding, subprocess_cli
from sandbox import can_bind_read_only, can_mount_tmpfs
from typer.testing import Result

from labelsift.cli import ExitCode
from labelsift.manifest import iter_records
from labelsift_testing.fake_rekognition import FakeRekognition, make_image


def check(result: Result | subprocess.CompletedProcess[str], code: int, *names: str) -> str:
    """The documented exit code, no traceback, and every one of `names` in the message."""
    text = said(result)
    got = result.exit_code if isinstance(result, Result) else result.returncode
    assert got == code, text
    assert "Traceback" not in text and "unexpected" not in text, text
    unwrapped = "".join(text.split())  # the console wraps long paths anywhere
    for name in names:
        assert "".join(name.split()) in unwrapped, (name, text)
    return text


def images(folder: Path, count: int, scene: str = "bird") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"{i:03d}.jpg").write_bytes(make_image(scene, seed=i))
    return folder


# ---- the lock file is the manifest's, never a file someone planted there --------------------


def test_a_planted_lock_symlink_is_refused_and_its_target_left_alone(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 2)
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's own file\n")
    (tmp_path / "m.jsonl.lock").symlink_to(precious)
    text = check(cli(*scan_args(folder, tmp_path / "m.jsonl")), ExitCode.CANNOT_PROCEED, "m.jsonl.lock")
    assert "link" in text
    assert precious.read_text() == "the user's own file\n"
    assert (tmp_path / "m.jsonl.lock").is_symlink()  # not deleted either
    assert fake_rekognition.billed == 0


def test_a_planted_lock_hard_link_is_refused_and_the_other_name_left_alone(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 2)
    precious = tmp_path / "precious.txt"
    precious.write_text("the user's own file\n")
    os.link(precious, tmp_path / "m.jsonl.lock")
    check(cli(*scan_args(folder, tmp_path / "m.jsonl")), ExitCode.CANNOT_PROCEED, "m.jsonl.lock")
    assert precious.read_text() == "the user's own file\n"
    assert fake_rekognition.billed == 0


def test_a_lock_that_is_a_fifo_is_exit_3_naming_it(fake_rekognition: FakeRekognition, tmp_path: Path) -> None:
    folder = images(tmp_path / "src", 2)
    os.mkfifo(tmp_path / "m.jsonl.lock")
    check(cli(*scan_args(folder, tmp_path / "m.jsonl")), ExitCode.CANNOT_PROCEED, "m.jsonl.lock")
    assert fake_rekognition.billed == 0


def test_a_lock_that_is_a_folder_is_exit_3_naming_it(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 2)
    (tmp_path / "m.jsonl.lock").mkdir()
    check(cli(*scan_args(folder, tmp_path / "m.jsonl")), ExitCode.CANNOT_PROCEED, "m.jsonl.lock")
    assert (tmp_path / "m.jsonl.lock").is_dir()
    assert fake_rekognition.billed == 0


# ---- one writer per manifest, whatever name it is reached by --------------------------------


def test_two_scans_on_one_manifest_through_a_hard_link_pay_once(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 10)
    manifest = tmp_path / "c.jsonl"
    manifest.write_bytes(b"")
    os.link(manifest, tmp_path / "hard.jsonl")  # the same file under a second name
    fake_rekognition.latency_s = 0.4
    first = scan_holding(folder, manifest)
    try:
        second = subprocess.run(
            subprocess_cli(*scan_args(folder, tmp_path / "hard.jsonl")),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        check(second, ExitCode.CANNOT_PROCEED, "in use", f"pid {first.pid}")
        # nor may a merge replace it through that name meanwhile
        other = tmp_path / "other.jsonl"
        other.write_text(_line("s3://raw/a.jpg", "Bird", "2026-01-01T10:00:00Z") + "\n")
        merged = subprocess.run(
            subprocess_cli("merge", str(other), "-o", str(tmp_path / "hard.jsonl"), "--overwrite"),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        check(merged, ExitCode.CANNOT_PROCEED, "in use", f"pid {first.pid}")
    finally:
        first.wait(timeout=120)
    assert first.returncode == 0
    assert fake_rekognition.billed == 10
    assert len(list(iter_records(str(manifest)))) == 10


def test_a_scan_through_a_symlink_to_the_folder_pays_nothing_again(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "photos", 3)
    manifest = tmp_path / "m.jsonl"
    assert cli(*scan_args(folder, manifest)).exit_code == 0
    (tmp_path / "alias").symlink_to(folder)  # the same folder by another name
    (tmp_path / "one.jpg").symlink_to(folder / "001.jpg")  # one of its images by another name
    for again in (tmp_path / "alias", tmp_path / "one.jpg", Path(os.path.relpath(tmp_path / "alias"))):
        check(cli(*scan_args(again, manifest)), ExitCode.OK)
    assert fake_rekognition.billed == 3
    assert sorted(r.source for r in iter_records(str(manifest))) == [
        str(folder.resolve() / f"{i:03d}.jpg") for i in range(3)
    ]


# ---- a manifest someone else wrote: every valid line is read for what it is -----------------


def _verdict_lines(*sources: str) -> str:
    """Verdict lines as another tool writes them: json.dumps spacing, `source` before `kind`."""
    spaced = {"kind": "verdict", "source": sources[0], "verdict": {"label": "Bird", "accepted": False}}
    reordered = {"source": sources[1], "kind": "verdict", "verdict": {"label": "Bird", "accepted": False}}
    return json.dumps(spaced) + "\n" + json.dumps(reordered, separators=(",", ":")) + "\n"


def test_verdict_lines_in_another_key_order_or_spacing_are_verdicts_for_every_reader(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 3)
    manifest = tmp_path / "m.jsonl"
    assert cli(*scan_args(folder, manifest)).exit_code == 0
    first, second = (str(folder / f"{i:03d}.jpg") for i in range(2))
    with manifest.open("a") as stream:
        stream.write(_verdict_lines(first, second))
    # the verdicts are valid lines (schemas/verdict-entry.schema.json): a resumed scan reads them
    text = check(cli(*scan_args(folder, manifest)), ExitCode.OK)
    assert fake_rekognition.billed == 3, text
    rejected = {r.source for r in iter_records(str(manifest)) if r.review and not r.review[-1].accepted}
    assert rejected == {first, second}
    # a merge keeps them as verdicts: nothing superseded, nothing dropped
    merged = tmp_path / "merged.jsonl"
    check(cli("merge", str(manifest), "-o", str(merged)), ExitCode.OK, "3 records, 2 verdicts, 0 superseded")
    assert {r.source for r in iter_records(str(merged)) if r.review} == {first, second}
    # an export reads them too: the two rejected images are not exported as Bird
    out = tmp_path / "coco"
    check(cli("export", "coco", str(manifest), str(out), "--label", "Bird", "--val", "0"), ExitCode.OK)
    exported = json.loads((out / "annotations" / "instances_train.json").read_text())
    assert len(exported["images"]) == 1, exported["images"]


def _line(source: str, label: str, scanned_at: str) -> str:
    record = {"source": source, "etag": "e1", "size": 100, "width": 640, "height": 480}
    record |= {"format": "JPEG", "status": "labeled", "scanned_at": scanned_at}
    record |= {"detector": {"name": "rekognition", "model_version": "3.0"}}
    return json.dumps(record | {"labels": [{"name": label, "confidence": 90.0}]})


def test_merge_keeps_the_newest_record_by_time_not_by_how_the_time_is_written(tmp_path: Path) -> None:
    older, newer = tmp_path / "older.jsonl", tmp_path / "newer.jsonl"
    # 12:00 at +02:00 is 10:00 UTC, before 11:00 UTC; a whole second is before the half after it
    older.write_text(
        _line("s3://raw/a.jpg", "Cat", "2026-01-01T12:00:00+02:00") + "\n"
        + _line("s3://raw/b.jpg", "Cat", "2026-01-01T10:00:00Z") + "\n"
    )  # fmt: skip
    newer.write_text(
        _line("s3://raw/a.jpg", "Bird", "2026-01-01T11:00:00Z") + "\n"
        + _line("s3://raw/b.jpg", "Bird", "2026-01-01T10:00:00.500000Z") + "\n"
    )  # fmt: skip
    for shards in ([older, newer], [newer, older]):
        merged = tmp_path / "merged.jsonl"
        check(cli("merge", *map(str, shards), "-o", str(merged), "--overwrite"), ExitCode.OK, "2 superseded")
        kept = {r.source: r.labels[0].name for r in iter_records(str(merged))}
        assert kept == {"s3://raw/a.jpg": "Bird", "s3://raw/b.jpg": "Bird"}, (shards, kept)


_MEASURED = (
    "import runpy, sys\n"
    "try:\n"
    "    runpy.run_module('labelsift.cli', run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
    "    print('peak-kib', peak, file=sys.stderr)\n"
)


def _peak_rss_mib(args: list[str]) -> tuple[int, str, float]:
    """Run the CLI with `args`; its exit code, its output and its own peak resident memory (MiB).
    VmHWM is the process image's own high-water mark (rusage's maxrss would include this test
    process's, inherited across fork and exec)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True, timeout=300
    )
    text = " ".join((done.stdout + done.stderr).split())
    peak = int(text.rsplit("peak-kib ", 1)[1].split()[0])
    return done.returncode, text, peak / 1024


HUGE = 300 << 20  # a line no record comes near (a record is kilobytes)


def _with_huge_line(path: Path, good: Path, *, last: bool) -> None:
    with path.open("wb") as stream:
        stream.write(good.read_bytes())
        stream.write(b'{"source":"')
        for _ in range(HUGE >> 20):  # in pieces: this process stays small too
            stream.write(b"a" * (1 << 20))
        if not last:
            stream.write(b'"}\n' + good.read_bytes())


def test_a_huge_line_inside_a_manifest_is_exit_4_naming_it_without_being_read_whole(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 3)
    good = tmp_path / "good.jsonl"
    assert cli(*scan_args(folder, good)).exit_code == 0
    manifest = tmp_path / "m.jsonl"
    _with_huge_line(manifest, good, last=False)
    size = manifest.stat().st_size
    for command in (
        ["merge", str(manifest), "-o", str(tmp_path / "out.jsonl")],
        ["export", "coco", str(manifest), str(tmp_path / "coco"), "--label", "Bird"],
        scan_args(folder, manifest),
    ):
        code, text, peak = _peak_rss_mib(command)
        assert code == ExitCode.BAD_MANIFEST, text
        assert "line 4" in text and "MiB" in text and "Traceback" not in text, text
        assert peak < 300, (command, peak)  # the line is 300 MiB: it was never held whole
    assert manifest.stat().st_size == size
    assert fake_rekognition.billed == 3


def test_a_huge_last_line_without_newline_is_not_cut_by_a_resumed_scan(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 3)
    good = tmp_path / "good.jsonl"
    assert cli(*scan_args(folder, good)).exit_code == 0
    manifest = tmp_path / "m.jsonl"
    _with_huge_line(manifest, good, last=True)
    size = manifest.stat().st_size
    # a killed labelsift leaves at most part of one record: 300 MiB without a newline is not that,
    # so it is not cut as a "torn line" (nothing someone else wrote is deleted)
    code, text, peak = _peak_rss_mib(scan_args(folder, manifest))
    assert code == ExitCode.BAD_MANIFEST, text
    assert "line 4" in text and "MiB" in text, text
    assert peak < 300, peak
    assert manifest.stat().st_size == size
    assert fake_rekognition.billed == 3


def test_an_image_under_two_names_in_one_folder_is_scanned_once(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 3)
    (folder / "best").mkdir()
    (folder / "best" / "favourite.jpg").symlink_to(folder / "000.jpg")  # a curated view
    os.link(folder / "001.jpg", folder / "copy-of-001.jpg")  # a hard link: the same file
    outside = images(tmp_path / "elsewhere", 1, "dog")  # other bytes than 000.jpg (not a duplicate)
    (folder / "linked-in.jpg").symlink_to(outside / "000.jpg")  # a link out is still read
    text = check(cli(*scan_args(folder, tmp_path / "m.jsonl")), ExitCode.OK, "best/favourite.jpg")
    assert "copy-of-001.jpg" in text
    assert fake_rekognition.billed == 4, text
    assert len(list(iter_records(str(tmp_path / "m.jsonl")))) == 4


def test_a_manifest_that_is_a_fifo_is_exit_3_at_once_not_a_hang(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 2)
    fifo = tmp_path / "m.jsonl"
    os.mkfifo(fifo)  # or `<(zcat m.jsonl.gz)`: read once, while every reader reads twice
    for command in (
        scan_args(folder, fifo),
        ["export", "coco", str(fifo), str(tmp_path / "coco"), "--label", "Bird"],
        ["merge", str(fifo), "-o", str(tmp_path / "out.jsonl")],
        ["review", str(fifo), "--label", "Bird"],
    ):
        done = subprocess.run(subprocess_cli(*command), capture_output=True, text=True, timeout=60)
        check(done, ExitCode.CANNOT_PROCEED, "m.jsonl", "is a FIFO", "not a manifest file")
    assert fake_rekognition.billed == 0


@pytest.mark.skipif(not can_bind_read_only(), reason="needs `unshare -rm` to bind a folder read-only")
def test_a_manifest_on_a_read_only_file_system_says_so_not_free_space(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 2)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    command = " ".join(f"'{word}'" for word in subprocess_cli(*scan_args(folder, shelf / "m.jsonl")))
    script = f"mount --bind '{shelf}' '{shelf}' && mount -o remount,bind,ro '{shelf}' || exit 99\n{command}"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    text = check(done, ExitCode.CANNOT_PROCEED, "m.jsonl", "read-only")
    assert "Free space" not in text, text
    assert fake_rekognition.billed == 0


# ---- merge ----------------------------------------------------------------------------------


def test_merge_with_an_input_that_does_not_exist_is_exit_3_and_writes_nothing(tmp_path: Path) -> None:
    shard = tmp_path / "shard-1.jsonl"
    shard.write_text(_line("s3://raw/a.jpg", "Bird", "2026-01-01T10:00:00Z") + "\n")
    out = tmp_path / "all.jsonl"
    # a typo in the second shard's name: a merged manifest without it, exit 0, would be trusted
    # (and the shards deleted)
    check(
        cli("merge", str(shard), str(tmp_path / "shard-2.jsnol"), "-o", str(out)),
        ExitCode.CANNOT_PROCEED, "shard-2.jsnol",
    )  # fmt: skip
    assert not out.exists()
    check(cli("merge", str(tmp_path / "none.jsonl"), "-o", str(out)), ExitCode.CANNOT_PROCEED, "none.jsonl")
    assert not out.exists()


# ---- repair cuts only what a killed labelsift left ------------------------------------------


def test_a_resumed_scan_never_cuts_the_tail_of_a_file_labelsift_did_not_write(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 2)
    good = tmp_path / "good.jsonl"
    assert cli(*scan_args(folder, good)).exit_code == 0
    renamed = tmp_path / "m.jsonl"  # a gzip manifest that lost its .gz (a download, a `mv`)
    # compressed bytes with a 0x0A in them: a "last line" the old repair would cut (whether a given
    # payload compresses to one depends on its paths, so take the first copy count that does)
    payload, compressed = good.read_bytes(), b""
    for copies in range(40, 400):
        compressed = gzip.compress(payload * copies, mtime=0)
        if b"\n" in compressed:
            break
    assert b"\n" in compressed
    renamed.write_bytes(compressed)
    notes = tmp_path / "notes.txt"  # -o given the wrong file
    notes.write_text("shopping list\nmilk\neggs")
    for victim in (renamed, notes):
        before = victim.read_bytes()
        text = check(cli(*scan_args(folder, victim)), ExitCode.BAD_MANIFEST, victim.name)
        assert "removed a torn" not in text, text
        assert victim.read_bytes() == before
    assert fake_rekognition.billed == 2
    # what a killed scan leaves (a prefix of a record) is still cut, and the scan goes on
    good.write_bytes(good.read_bytes() + b'{"source":"/x/half-writ')
    check(cli(*scan_args(folder, good)), ExitCode.OK)
    assert b"half-writ" not in good.read_bytes() and good.read_bytes().endswith(b"\n")


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs `unshare -rm` to mount a small tmpfs")
def test_a_full_temporary_folder_is_exit_3_naming_it_not_a_bug(tmp_path: Path) -> None:
    when = "2026-01-01T10:00:00Z"
    records = [_line(f"s3://raw/{'x' * 60}-{i:06d}.jpg", "Bird", when) for i in range(20000)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("\n".join(records) + "\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    merged = tmp_path / "all.jsonl"
    command = " ".join(f"'{word}'" for word in subprocess_cli("merge", str(manifest), "-o", str(merged)))
    script = f"mount -t tmpfs -o size=64k tmpfs '{scratch}' || exit 99\nTMPDIR='{scratch}' {command}"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    check(done, ExitCode.CANNOT_PROCEED, str(scratch), "TMPDIR")
    assert not merged.exists()


def test_a_merged_gz_manifest_names_itself_in_its_gzip_header_not_its_temporary_name(
    tmp_path: Path,
) -> None:
    shard = tmp_path / "shard.jsonl"
    shard.write_text(_line("s3://raw/a.jpg", "Bird", "2026-01-01T10:00:00Z") + "\n")
    out = tmp_path / "all.jsonl.gz"
    check(cli("merge", str(shard), "-o", str(out)), ExitCode.OK)
    # `gunzip -N all.jsonl.gz` restores the name the header records: it must be all.jsonl, not a
    # hidden `.all.jsonl.gz.<random>.partial`
    done = subprocess.run(["gunzip", "-N", str(out)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.jsonl", "shard.jsonl"]
    assert [r.source for r in iter_records(str(tmp_path / "all.jsonl"))] == ["s3://raw/a.jpg"]


def test_a_manifest_saved_with_a_byte_order_mark_is_read_whole_by_every_reader(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 3)
    manifest = tmp_path / "m.jsonl"
    assert cli(*scan_args(folder, manifest)).exit_code == 0
    first = manifest.read_bytes().split(b"\n", 1)[0]
    # an editor's "UTF-8 with BOM", and the first image's record again at the end (superseding)
    manifest.write_bytes(b"\xef\xbb\xbf" + manifest.read_bytes() + first + b"\n")
    check(cli(*scan_args(folder, manifest)), ExitCode.OK)
    assert fake_rekognition.billed == 3  # the first line was read: nothing paid again
    merged = tmp_path / "merged.jsonl"
    check(cli("merge", str(manifest), "-o", str(merged)), ExitCode.OK, "3 records", "1 superseded")
    out = tmp_path / "coco"
    check(cli("export", "coco", str(manifest), str(out), "--label", "Bird", "--workers", "2"), ExitCode.OK)
    exported = json.loads((out / "annotations" / "instances_train.json").read_text())
    val = out / "annotations" / "instances_val.json"
    count = len(exported["images"]) + (len(json.loads(val.read_text())["images"]) if val.exists() else 0)
    assert count == 3


def test_a_line_nested_a_hundred_thousand_deep_is_exit_4_naming_it_not_a_bug(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 2)
    manifest = tmp_path / "m.jsonl"
    assert cli(*scan_args(folder, manifest)).exit_code == 0
    deep = "[" * 100_000 + "]" * 100_000
    export = ["export", "coco", "", str(tmp_path / "coco"), "--label", "Bird", "--overwrite"]
    # (an export does not parse a record that names no exported label: the second line is not read)
    for bad, readers in (
        (deep, ("scan", "merge", "export")),
        ('{"source":"/x.jpg","labels":' + deep + "}", ("scan", "merge")),
    ):
        broken = tmp_path / "broken.jsonl"
        broken.write_text(manifest.read_text() + bad + "\n")
        commands = {
            "scan": scan_args(folder, broken),
            "merge": ["merge", str(broken), "-o", str(tmp_path / "out.jsonl"), "--overwrite"],
            "export": [*export[:2], str(broken), *export[3:]],
        }
        for reader in readers:
            check(cli(*commands[reader]), ExitCode.BAD_MANIFEST, "broken.jsonl", "line 3")
    assert fake_rekognition.billed == 2


def test_import_review_of_a_line_nested_too_deeply_names_it_like_any_bad_line(
    fake_rekognition: FakeRekognition, tmp_path: Path
) -> None:
    folder = images(tmp_path / "src", 2)
    manifest = tmp_path / "m.jsonl"
    assert cli(*scan_args(folder, manifest)).exit_code == 0
    answers = tmp_path / "output.manifest"
    answers.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    check(cli("import-review", str(manifest), str(answers)), ExitCode.OK, "line 1", "nested too deeply")
