"""`labelsift report`: the data (`build_report`), the page's guard rails, thumbnails from S3."""

from __future__ import annotations

import io
import itertools
import os
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from report_corpus import expected_counts, make_corpus
from typer.testing import CliRunner

from labelsift.cli import app
from labelsift.report import build_report, make_report
from labelsift.report.collect import BANDS
from labelsift.report.page import MARKER
from labelsift.storage import Storage

runner = CliRunner()


def test_counts_curves_and_verdicts_equal_the_manifests(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path)
    want = expected_counts(corpus.manifest, "Dog", 80.0)
    report = build_report(str(corpus.manifest), ["Dog"], threshold=80.0, storage=Storage())
    tally = report.tally
    assert tally.records == want["records"]
    assert dict(tally.by_status) == dict(want["statuses"])  # type: ignore[call-overload]
    assert {row.code: row.count for row in tally.reasons.values()} == dict(want["reasons"])  # type: ignore[call-overload]
    assert tally.billed == want["billed"]
    assert report.cost_usd == pytest.approx(0.001 * tally.billed)  # the default table's first tier
    (dog,) = tally.labels
    assert dog.images == want["images"]
    assert dog.kept(80.0) == (want["kept_images"], want["kept_boxes"])
    assert (dog.accepted, dog.rejected) == (want["accepted"], want["rejected"])
    curve = dog.curve()
    assert [t for t, _, _ in curve] == list(range(101))
    assert curve[0][1] == dog.images and curve[80][1:] == dog.kept(80.0)
    assert all(a[1] >= b[1] and a[2] >= b[2] for a, b in itertools.pairwise(curve))
    assert [name for name, *_ in report.top_labels][:2] == ["Dog", "Animal"]
    assert dict((name, parents) for name, _, _, parents in report.top_labels)["Dog"] == ["Animal", "Pet"]


def test_samples_are_bounded_per_band_and_every_one_has_a_thumbnail_or_a_reason(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path, count=60)
    report = build_report(str(corpus.manifest), ["Dog"], samples_per_band=3, storage=Storage())
    (dog,) = report.tally.labels
    assert [band.name for band in dog.bands] == [name for name, _, _ in BANDS]
    assert sum(band.images for band in dog.bands) == dog.images
    for band in dog.bands:
        assert len(band.samples) == min(3, band.images)
        assert all(band.low <= s.confidence < band.high for s in band.samples)
    samples = [s for band in dog.bands for s in band.samples]
    for sample in samples:
        assert (sample.thumbnail is None) != (sample.problem is None)
        if sample.thumbnail is not None:
            assert max(Image.open(io.BytesIO(sample.thumbnail)).size) <= 240
    broken = [s for s in samples if s.source == str(corpus.broken)]
    assert broken and broken[0].problem and str(corpus.broken) in broken[0].problem


def test_without_labels_the_most_boxed_labels_are_shown(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path)
    report = build_report(str(corpus.manifest), samples_per_band=0)
    assert next(label.name for label in report.tally.labels) == "Dog"  # boxes, not the parent-only Animal


def test_cli_writes_one_page_and_guards_its_output(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path)
    out = tmp_path / "report.html"
    args = ["report", str(corpus.manifest), "-o", str(out), "--label", "Dog", "--threshold", "80"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>\n" + MARKER)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from anywhere
    assert runner.invoke(app, args).exit_code == 3  # exists: never replaced silently
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my own notes</html>")
    refused = runner.invoke(app, ["report", str(corpus.manifest), "-o", str(mine), "--overwrite"])
    assert refused.exit_code == 3 and "not a report labelsift wrote" in refused.output
    assert mine.read_text() == "<html>my own notes</html>"
    before = corpus.manifest.read_bytes()
    onto = runner.invoke(app, ["report", str(corpus.manifest), "-o", str(corpus.manifest), "--overwrite"])
    assert onto.exit_code == 2 and corpus.manifest.read_bytes() == before
    link = tmp_path / "link.html"
    link.symlink_to(out)
    assert runner.invoke(app, ["report", str(corpus.manifest), "-o", str(link), "--overwrite"]).exit_code == 3
    missing = runner.invoke(app, ["report", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "r.html")])
    assert missing.exit_code == 3 and not (tmp_path / "r.html").exists()
    folder = runner.invoke(app, ["report", str(corpus.manifest), "-o", str(tmp_path)])
    assert folder.exit_code == 2
    s3 = runner.invoke(app, ["report", str(corpus.manifest), "-o", "s3://bucket/report.html"])
    assert s3.exit_code == 2 and "local file" in s3.output


def test_a_bad_label_name_is_refused_before_anything_is_read(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path, count=2)
    result = runner.invoke(
        app, ["report", str(corpus.manifest), "-o", str(tmp_path / "r.html"), "-l", "Dog", "-l", "dog"]
    )
    assert result.exit_code == 2 and not (tmp_path / "r.html").exists()


def test_thumbnails_come_from_s3(tmp_path: Path, bucket: str, storage: Storage) -> None:
    corpus = make_corpus(tmp_path, count=4)
    text = corpus.manifest.read_text()
    for path in sorted((tmp_path / "images").glob("photo-*.jpg")):
        storage.write(f"s3://{bucket}/pile/{path.name}", path.read_bytes())
        text = text.replace(str(path), f"s3://{bucket}/pile/{path.name}")
    manifest = tmp_path / "s3-manifest.jsonl"
    manifest.write_text(text)
    report = make_report(str(manifest), str(tmp_path / "r.html"), ["Dog"], storage=storage)
    from_s3 = [
        s
        for label in report.tally.labels
        for b in label.bands
        for s in b.samples
        if s.source.startswith("s3://")
    ]
    assert len(from_s3) == 4 and all(s.thumbnail for s in from_s3)


def test_scan_and_export_say_where_a_report_can_be_made(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path, count=3)
    result = runner.invoke(
        app, ["export", "coco", str(corpus.manifest), str(tmp_path / "coco"), "-l", "Dog", "--val", "0"]
    )
    assert result.exit_code == 0, result.output
    assert f"labelsift report {corpus.manifest} -o report.html --label Dog --threshold 50" in result.output


def test_a_label_no_record_has_is_named_with_the_closest_seen(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path, count=3)
    result = runner.invoke(app, ["report", str(corpus.manifest), "-o", str(tmp_path / "r.html"), "-l", "Dgo"])
    assert result.exit_code == 0
    assert "no record has the label 'Dgo'. Did you mean 'Dog'?" in result.output


def test_a_fifo_or_device_as_a_sampled_source_is_named_not_read(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path, count=1)
    fifo, device = tmp_path / "images" / "fifo.jpg", tmp_path / "images" / "zero.jpg"
    os.mkfifo(fifo)
    device.symlink_to("/dev/zero")
    text = corpus.manifest.read_text()
    lines = [line for line in text.splitlines() if "photo-00" in line]
    extra = [lines[0].replace(str(tmp_path / "images" / "photo-00.jpg"), str(p)) for p in (fifo, device)]
    corpus.manifest.write_text(text + "\n".join(extra) + "\n")
    report = build_report(str(corpus.manifest), ["Dog"], samples_per_band=50, storage=Storage())
    problems = {s.source: s.problem for label in report.tally.labels for b in label.bands for s in b.samples}
    assert "not a regular file" in str(problems[str(fifo)]) and "not a regular file" in str(
        problems[str(device)]
    )


def test_hostile_outputs_are_refused_before_any_work(tmp_path: Path) -> None:
    """From the hostile pass: a FIFO at -o hung; S3:// (capital) was uploaded; .gz, a trailing
    slash, a parent that is a file and a non-HTML name wrote pages no browser opens or exit 1."""
    corpus = make_corpus(tmp_path, count=1)
    manifest = str(corpus.manifest)
    fifo = tmp_path / "fifo.html"
    os.mkfifo(fifo)
    cases = {
        (str(fifo), "--overwrite"): 3,
        ("S3://bucket/r.html",): 2,
        (str(tmp_path / "r.html.gz"),): 2,
        (str(tmp_path / "newdir") + "/",): 2,
        (str(corpus.manifest) + "/x.html",): 3,
    }
    for args, code in cases.items():
        result = runner.invoke(app, ["report", manifest, "-o", *args])
        assert result.exit_code == code, (args, result.output)
    assert not (tmp_path / "newdir").exists() and not (tmp_path / "r.html.gz").exists()


def test_a_fractional_threshold_counts_exactly(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path)
    for threshold in (50.5, 80.25, 99.3):
        want = expected_counts(corpus.manifest, "Dog", threshold)
        (dog,) = build_report(
            str(corpus.manifest), ["Dog"], threshold=threshold, samples_per_band=0
        ).tally.labels
        assert dog.kept(threshold) == (want["kept_images"], want["kept_boxes"]), threshold


def test_a_thumbnail_from_a_missing_bucket_says_so(
    tmp_path: Path, storage: Storage, make_bucket: Any
) -> None:
    corpus = make_corpus(tmp_path, count=1)
    gone = make_bucket() + "-gone"
    text = corpus.manifest.read_text().replace(
        str(tmp_path / "images" / "photo-00.jpg"), f"s3://{gone}/p.jpg"
    )
    corpus.manifest.write_text(text)
    report = build_report(str(corpus.manifest), ["Dog"], samples_per_band=50, storage=storage)
    problems = {s.source: s.problem for label in report.tally.labels for b in label.bands for s in b.samples}
    assert gone in str(problems[f"s3://{gone}/p.jpg"])
