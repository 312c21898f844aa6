"""The main job on photos that ship with labelsift, with the offline model: no account, no network."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from labelsift.detectors.factory import build_detector
from labelsift.errors import UsageError
from labelsift.exporters.coco import export_coco
from labelsift.exporters.custom_labels import export_custom_labels
from labelsift.exporters.summary import ExportSummary
from labelsift.models import RunSummary
from labelsift.report import make_report
from labelsift.scan import ScanOptions, scan
from labelsift.select import Selection
from labelsift.storage import Storage

FOLDER_LABELS = ("Dog", "Cat", "Bird", "Person")
COCO_LABELS = ("Person", "Dog", "Cat", "Horse", "Giraffe", "Zebra", "Bicycle", "Kite")
REPORT_LABELS = ("Person", "Dog", "Cat")
THRESHOLD = 65.0


def photos() -> Path:
    return Path(str(resources.files("labelsift.demo").joinpath("photos")))


@dataclass(frozen=True)
class DemoResult:
    manifest: Path
    scan: RunSummary
    custom_labels: ExportSummary
    coco: ExportSummary
    page: Path  # the HTML report of the manifest

    def report(self) -> list[str]:
        folders = ", ".join(
            f"{label}: {sum(counts.images.values())}"
            for label, counts in self.custom_labels.per_label.items()
        )
        boxes = sum(sum(counts.boxes.values()) for counts in self.coco.per_label.values())
        return [
            f"manifest: {self.manifest}",
            f"Custom Labels folders in {self.custom_labels.destination} ({folders})",
            f"COCO in {self.coco.destination}: {sum(self.coco.images.values())} images, {boxes} boxes",
            f"report: {self.page} (open it in a browser)",
        ]


def run_demo(output: Path, *, on_progress: Callable[[str], None] | None = None) -> DemoResult:
    """Scan the bundled photos into OUTPUT/manifest.jsonl, then export folders and COCO from it."""
    say = on_progress or (lambda line: None)
    storage = Storage()
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output} is a file: give the demo a folder to write into (new or its own).")
    output.mkdir(parents=True, exist_ok=True)
    manifest = output / "manifest.jsonl"
    say(f"scanning {photos()} with the offline model...")
    summary = scan(
        str(photos()), str(manifest), build_detector("local", storage), storage, ScanOptions(workers=2)
    )
    say("exporting Custom Labels folders and COCO from the manifest (no detector calls)...")
    folders = export_custom_labels(
        str(manifest),
        str(output / "custom-labels"),
        Selection(labels=FOLDER_LABELS, threshold=THRESHOLD),
        storage=storage,
        source_root=str(photos()),
    )
    coco = export_coco(
        str(manifest),
        str(output / "coco"),
        Selection(labels=COCO_LABELS, threshold=THRESHOLD),
        storage=storage,
        copy_images=True,
        overwrite=True,  # the demo's own folder: a rerun replaces its COCO export
    )
    say("writing the report (what the detector saw, what each threshold keeps)...")
    page = output / "report.html"
    make_report(
        str(manifest), str(page), REPORT_LABELS, threshold=THRESHOLD, overwrite=page.exists(), storage=storage
    )
    return DemoResult(manifest=manifest, scan=summary, custom_labels=folders, coco=coco, page=page)
