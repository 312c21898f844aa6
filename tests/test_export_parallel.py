"""Exports spread over worker processes write exactly what one process writes, summary included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest
from manifest_builders import box, failed, label, record, write_manifest

from labelsift.cli import ExitCode
from labelsift.exporters.coco import export_coco
from labelsift.exporters.groundtruth import Task, export_groundtruth
from labelsift.exporters.pipeline import Parallel
from labelsift.exporters.summary import _COUNTS, _DETAILS, _TALLIES, ExportSummary
from labelsift.exporters.voc import export_voc
from labelsift.exporters.yolo import export_yolo
from labelsift.manifest import ManifestError, append_verdict, first_pass
from labelsift.models import ImageRecord, Verdict
from labelsift.select import Selection

ONE = Parallel(workers=1)
# small batches, so that a few hundred records cross many batch boundaries and both workers
TWO = Parallel(workers=2, inline_first=10, batch=37)
SELECTION = Selection(("Bird", "Dog"), threshold=50, band=(45.0, 55.0))


def _varied(i: int) -> ImageRecord:
    """Records that exercise every count: boxes kept, clipped, dropped, held out, unsized, failed."""
    source = f"s3://raw/set-{i % 7}/img-{i:04d}.jpg"
    kind = i % 9
    if kind == 0:
        return failed(source)
    if kind == 1:
        return record(source, label("Bird", 90, box(0.1, 0.1, 0.3, 0.3)), width=None, height=None)
    if kind == 2:
        return record(source, label("Bird", 50, box(0.1, 0.1, 0.3, 0.3)))  # in the review band
    if kind == 3:
        return record(source, label("Dog", 80, box(0.5, 0.5, 0.0001, 0.3)))  # degenerate: no boxes
    if kind == 4:
        return record(source, label("Tree", 99, box(0.1, 0.1, 0.5, 0.5)))  # names neither label
    if kind == 5:  # Bird with a box, Dog without: a warning
        return record(source, label("Bird", 70, box(0.8, 0.8, 0.4, 0.4)), label("Dog", 90))
    return record(
        source,
        label("Bird", 60 + kind, box(0.1, 0.2, 0.3, 0.4), box(0.2, 0.2, 0.1, 0.1, confidence=30)),
        label("Dog", 75, box(0.4, 0.1, 0.2, 0.2)),
        label("Animal", 99, box(0.1, 0.2, 0.3, 0.4)),
    )


@pytest.fixture(params=["plain", "reviewed"])
def manifest(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """`plain`: workers read their spans of the file themselves; `reviewed` (verdicts, a source
    written again): this process reads the effective lines and sends them."""
    records = [_varied(i) for i in range(400)]
    if request.param == "plain":
        path = write_manifest(tmp_path / "m.jsonl", records)
        assert first_pass(path, TWO.batch).plain
        return path
    records += [_varied(3) for _ in range(2)]  # a source written again: only its last record counts
    path = write_manifest(tmp_path / "m.jsonl", records)
    append_verdict(path, _varied(2).source, Verdict(label="Bird", accepted=True))
    append_verdict(path, _varied(15).source, Verdict(label="Dog", accepted=False))
    assert not first_pass(path, TWO.batch).plain
    return path


def _files(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.name.endswith(".labelsift-receipt.jsonl"):  # its time and the COCO files' checksums
            continue
        text = path.read_text(encoding="utf-8").replace(str(root), "<root>")  # data.yaml names it
        if path.suffix == ".json":  # COCO: every byte but the creation time
            value = json.loads(text)
            value["info"].pop("date_created")
            text = json.dumps(value)
        out[str(path.relative_to(root))] = text
    return out


def _same_summary(one: ExportSummary, two: ExportSummary) -> None:
    assert (one.workers, two.workers) == (1, 2)
    left, right = one.model_dump(), two.model_dump()
    for side in (left, right):
        side.pop("workers")
        side.pop("destination")
    assert left == right


@pytest.mark.parametrize("fmt", ["coco", "yolo", "voc", "boxes", "classification", "per-label"])
def test_workers_write_exactly_what_one_process_writes(tmp_path: Path, manifest: str, fmt: str) -> None:
    def run(parallel: Parallel, out: Path) -> ExportSummary:
        if fmt == "coco":
            return export_coco(manifest, str(out), SELECTION, copy_images=False, parallel=parallel)
        if fmt == "yolo":
            return export_yolo(manifest, str(out), SELECTION, copy_images=False, parallel=parallel)
        if fmt == "voc":
            return export_voc(manifest, str(out), SELECTION, copy_images=False, parallel=parallel)
        task = cast(Task, fmt)
        return export_groundtruth(
            manifest, str(out / "output.manifest"), SELECTION, task=task, parallel=parallel
        )

    one, two = run(ONE, tmp_path / "one"), run(TWO, tmp_path / "two")
    _same_summary(one, two)
    assert one.records == 400  # the repeated source counts once
    assert one.per_label["Bird"].held_out and one.total_images and one.lines_written + one.files_written
    if fmt in ("coco", "yolo", "voc", "boxes"):
        # an image missing a box for one of its labels is held out, in the same order by any worker count
        assert one.skipped and one.skipped["label_without_boxes"] and one.dropped_boxes
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_capped_details_are_the_first_ones_in_manifest_order(tmp_path: Path, manifest: str) -> None:
    one = export_coco(
        manifest, str(tmp_path / "one"), SELECTION, copy_images=False, detail_limit=5, parallel=ONE
    )
    two = export_coco(
        manifest, str(tmp_path / "two"), SELECTION, copy_images=False, detail_limit=5, parallel=TWO
    )
    assert two.details_truncated and len(two.skipped_images) == 5
    assert two.skipped_images == one.skipped_images and two.warnings == one.warnings
    assert two.skipped == one.skipped  # counts stay complete


def test_a_bad_line_in_a_worker_names_its_line(tmp_path: Path, manifest: str) -> None:
    lines = Path(manifest).read_text(encoding="utf-8").splitlines(keepends=True)
    lines[300] = lines[300].replace('"status":"labeled"', '"status":"maybe"')
    Path(manifest).write_text("".join(lines), encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        export_coco(manifest, str(tmp_path / "out"), SELECTION, copy_images=False, parallel=TWO)
    assert caught.value.line_no == 301 and "status" in str(caught.value)


def test_adding_a_part_adds_every_count() -> None:
    identity = {"format", "manifest", "destination", "classes", "workers", "dry_run", "detail_limit"}
    identity.add("detail_room")
    identity.add("sources")  # set by the writer (this process copies), never by a worker's part
    merged = {*_COUNTS, *_TALLIES, *_DETAILS, "per_label", "details_truncated"}
    assert set(ExportSummary.model_fields) == identity | merged  # a new field must say how it merges
    total = ExportSummary.start("coco", "m", "d", ["Bird"], detail_limit=2)
    for _ in range(2):
        part = total.empty_part()
        for name in _COUNTS:
            setattr(part, name, 1)
        part.skip("s3://b/k", "no_boxes", "why", "Bird")
        part.drop_boxes({"degenerate": 2})
        part.per_label["Bird"].held_out = 1
        part.count_image("Bird", "train", 3, human=True)
        total.add_part(part)
    assert all(getattr(total, name) == 2 for name in _COUNTS)
    assert total.skipped == {"no_boxes": 2} and total.dropped_boxes == {"degenerate": 4}
    assert len(total.skipped_images) == 2 and not total.details_truncated
    bird = total.per_label["Bird"]
    assert (bird.held_out, bird.human, bird.images, bird.boxes) == (2, 2, {"train": 2}, {"train": 6})
    total.add_part(part)
    assert len(total.skipped_images) == 2 and total.details_truncated


def test_a_part_keeps_only_the_details_the_export_has_room_for() -> None:
    total = ExportSummary.start("coco", "m", "d", ["Bird"], detail_limit=2)
    total.skip("s3://b/1", "no_boxes", "why")
    part = total.empty_part()
    for i in range(3):
        part.skip(f"s3://b/p{i}", "no_boxes", "why")
        part.warn(f"s3://b/p{i}", "label_without_boxes", "why")
    assert len(part.skipped_images) == 1 and len(part.warnings) == 2 and part.details_truncated
    assert part.skipped == {"no_boxes": 3}  # counts stay complete
    total.add_part(part)
    assert [i.source for i in total.skipped_images] == ["s3://b/1", "s3://b/p0"]
    assert [i.source for i in total.warnings] == ["s3://b/p0", "s3://b/p1"]
    full = total.empty_part()
    full.skip("s3://b/late", "no_boxes", "why")
    assert not full.skipped_images and full.skipped == {"no_boxes": 1} and full.details_truncated


def _children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


@pytest.mark.parametrize("how", ["SIGKILL", "Ctrl-C"])
def test_a_stopped_exporter_leaves_no_worker_behind(tmp_path: Path, how: str) -> None:
    """SIGKILL reaches the exporter alone; Ctrl-C reaches the whole process group, as a terminal sends
    it, and the CLI exits 130 saying how to redo the export."""
    line = record("s3://raw/x.jpg", label("Bird", 90, box(0.1, 0.1, 0.3, 0.3))).model_dump_json()
    with open(tmp_path / "big.jsonl", "w", encoding="utf-8") as stream:
        for i in range(200_000):
            stream.write(line.replace("s3://raw/x.jpg", f"s3://raw/{i:07d}.jpg") + "\n")
    command = [sys.executable, "-m", "labelsift.cli", "export", "coco", str(tmp_path / "big.jsonl")]
    command += [str(tmp_path / "out"), "--label", "Bird", "--workers", "2", "--no-copy-images"]
    exporter = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(exporter.pid)) < 2:
            assert exporter.poll() is None and time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        if how == "Ctrl-C":
            os.killpg(exporter.pid, signal.SIGINT)
            _, stderr = exporter.communicate(timeout=30)
            assert exporter.returncode == ExitCode.INTERRUPTED  # stopped, not finished: 130
            assert "interrupted by Ctrl-C" in stderr and "--overwrite" in stderr
            assert "Traceback" not in stderr
    finally:
        exporter.kill()
    exporter.wait()
    deadline = time.monotonic() + 10
    while alive := {pid for pid in workers if Path(f"/proc/{pid}").exists() and not _zombie(pid)}:
        assert time.monotonic() < deadline, f"workers {alive} outlived the killed exporter"
        time.sleep(0.05)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return False
