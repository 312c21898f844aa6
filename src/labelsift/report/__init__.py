"""A report people look at: one self-contained HTML page of what the detector saw in a manifest.

`build_report` streams the manifest once (twice when no label is given: the first pass finds the
labels seen most) and returns the data the page shows; `write_report` renders it (`page.render`)
and writes the file in one step. Memory stays flat: counters, 101-bucket histograms and a bounded
reservoir of samples per label and confidence band.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from labelsift import uri
from labelsift.cost import PriceTable, load_prices
from labelsift.errors import CannotProceed, UsageError
from labelsift.manifest import iter_records, require_existing
from labelsift.manifest.inputs import one_manifest
from labelsift.select import Selection, closest_label
from labelsift.storage import Storage
from labelsift.whole_output import refuse_output_among_inputs, write_whole

from .collect import Collector, LabelReport, Sample, Tally
from .data import Report
from .page import MARKER, render
from .thumbs import Reader, fill_thumbnails

__all__ = ["LabelReport", "Report", "Sample", "Tally", "build_report", "make_report", "write_report"]
AUTO_LABELS = 3


def _tally(manifest: str, labels: Sequence[str], threshold: float, parents: bool, samples: int) -> Tally:
    selection = Selection(tuple(labels), threshold=0.0, include_parents=parents) if labels else None
    tally = Tally(manifest, labels=[LabelReport(name, threshold) for name in labels])
    collector = Collector(tally, selection, samples_per_band=samples)
    for record in iter_records(manifest):
        collector.add(record)
    return tally


def _most_boxed(tally: Tally) -> list[str]:
    """The labels to show when none is asked: those with the most boxes (objects, not scenes), then
    the most images; labels are counted once per image, so a parent-only label never wins on boxes."""
    ranked = sorted(
        tally.label_images, key=lambda name: (-tally.label_boxes[name], -tally.label_images[name], name)
    )
    return ranked[:AUTO_LABELS]


def build_report(
    manifest: str,
    labels: Sequence[str] = (),
    *,
    threshold: float = 50.0,
    parents: bool = True,
    storage: Reader | None = None,
    samples_per_band: int = 8,
    top: int = 30,
    prices: PriceTable | None = None,
) -> Report:
    """The data of a report on `manifest`: for `labels` (default: the AUTO_LABELS seen most)."""
    if not 0.0 <= threshold <= 100.0:
        raise UsageError(f"--threshold {threshold:g}: give a confidence between 0 and 100.")
    if samples_per_band < 0:
        raise UsageError(f"--samples {samples_per_band}: give 0 or more thumbnails per band.")
    if labels:
        Selection(tuple(labels))  # the same checks as every command: empty names, repeats
    with one_manifest(manifest) as readable:  # a folder or prefix of shards: one merged manifest
        tally = _tally(readable, labels, threshold, parents, samples_per_band)
        if not labels and tally.label_images:
            chosen = _most_boxed(tally)
            tally = _tally(readable, chosen, threshold, parents, samples_per_band)
    tally.manifest = manifest
    fill_thumbnails(
        (sample for label in tally.labels for band in label.bands for sample in band.samples),
        storage if storage is not None else Storage(),
    )
    table = prices if prices is not None else load_prices(None)
    top_labels = [
        (name, images, tally.label_boxes[name], sorted(tally.parents.get(name, ())))
        for name, images in tally.label_images.most_common(top)
    ]
    unmatched = {
        label.name: closest_label([label.name], tally.label_images)
        for label in tally.labels
        if not label.images
    }
    return Report(tally, table.cost(tally.billed), top_labels, unmatched=unmatched)


def _check_output(manifest: str, output: str, overwrite: bool) -> Path:
    """The local page file to write; every refusal comes before any work (nothing read, nothing drawn)."""
    location = uri.parse(output, what="report")
    if not isinstance(location, uri.LocalLocation):
        raise UsageError(
            f"-o {output}: write the report to a local file (it is one page that opens from disk), "
            "then upload it if you want it in S3."
        )
    path = location.path
    if output.endswith(("/", os.sep)) or path.is_dir():
        raise UsageError(f"-o {output} is a folder: give a file name such as {path / 'report.html'}.")
    if path.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"-o {output}: the report is one HTML page; give a name ending in .html.")
    refuse_output_among_inputs([manifest], output, what="report")
    _check_parent(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise CannotProceed(f"{output} exists: add --overwrite to replace it, or give another -o.")
        if not _our_page(path):
            raise CannotProceed(
                f"{output} is not a report labelsift wrote (or is a link or special file): it is left as "
                "it is. Give another -o, or move that file away first."
            )
    return path


def _check_parent(path: Path) -> None:
    parent = path.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise CannotProceed(f"{folder} is a file, so {path} cannot be made: give another -o.")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise CannotProceed(f"{folder} cannot be written to: give -o a folder you can write.")
            return


def _our_page(path: Path) -> bool:
    """True for a regular file (not a link, FIFO or device) whose first line is our marker."""
    try:
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):
            return False
        with path.open("rb") as handle:
            head = handle.read(256).decode("utf-8", "replace")
    except OSError:
        return False
    return MARKER in head


def write_report(report: Report, output: str, *, overwrite: bool = False) -> None:
    """Render `report` into `output` in one step (never a half-written page)."""
    _check_output(report.tally.manifest, output, overwrite)
    page = render(report)
    write_whole(output, lambda stream: stream.write(page))


def make_report(
    manifest: str,
    output: str,
    labels: Sequence[str] = (),
    *,
    threshold: float = 50.0,
    parents: bool = True,
    samples_per_band: int = 8,
    overwrite: bool = False,
    storage: Reader | None = None,
) -> Report:
    """Check the destination first, then build the report and write it: what `labelsift report` runs."""
    where = uri.parse(manifest, what="manifest")
    if isinstance(where, uri.LocalLocation) and not where.path.is_dir():  # a folder holds shards
        require_existing(where.path)
    _check_output(manifest, output, overwrite)
    report = build_report(
        manifest,
        labels,
        threshold=threshold,
        parents=parents,
        storage=storage,
        samples_per_band=samples_per_band,
    )
    write_report(report, output, overwrite=overwrite)
    return report
