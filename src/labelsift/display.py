"""What the command line shows: a live progress bar on a terminal, plain lines elsewhere, summaries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from labelsift.exporters.summary import ExportSummary
from labelsift.models import RunSummary
from labelsift.scan import ScanProgress


def _line(progress: ScanProgress) -> str:
    return (
        f"{progress.considered} images ({progress.already_done} done before), "
        f"{progress.rate:.1f}/s, hits {progress.hits}, misses in a row {progress.misses_in_row}, "
        f"errors {progress.errors}, ${progress.cost_usd:.3f}"
    )


@contextmanager
def scan_progress(
    console: Console, count_total: Callable[[], int] | None, limit: int | None
) -> Iterator[Callable[[ScanProgress], None]]:
    """Yield a callback that shows scan progress; the total is counted in the background.

    Never ends on a stale state: without a terminal, a line every `PLAIN_EVERY` seconds (none for a
    shorter run) and, if any was printed, a last one with the final state; on a terminal the bar
    disappears when the scan ends (the summary that follows has the final counts)."""
    if not console.is_terminal:
        yield from _plain_progress(console)
        return
    bar = Progress(
        TextColumn("[bold]scan"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[rate]:.1f} img/s"),
        TextColumn("hits {task.fields[hits]}"),
        TextColumn("misses-in-row {task.fields[misses]}"),
        TextColumn("errors {task.fields[errors]}"),
        TextColumn("${task.fields[cost]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task: TaskID = bar.add_task("scan", total=limit, rate=0.0, hits=0, misses=0, errors=0, cost=0.0)

    def count() -> None:
        assert count_total is not None
        try:
            total = count_total()
        except Exception:  # the count only feeds the bar; the scan reports real errors itself
            return
        bar.update(task, total=min(total, limit) if limit is not None else total)

    if count_total is not None:
        threading.Thread(target=count, name="labelsift-count", daemon=True).start()

    def live(progress: ScanProgress) -> None:
        bar.update(
            task,
            completed=progress.considered,
            rate=progress.rate,
            hits=progress.hits,
            misses=progress.misses_in_row,
            errors=progress.errors,
            cost=progress.cost_usd,
        )

    with bar:
        yield live


PLAIN_EVERY = 5.0  # seconds between progress lines when stdout is not a terminal


def _plain_progress(console: Console) -> Iterator[Callable[[ScanProgress], None]]:
    started = time.monotonic()
    printed = [started]  # when the last line was printed (the start: the first comes after a pause)
    latest: list[ScanProgress] = []

    def plain(progress: ScanProgress) -> None:
        latest[:] = [progress]
        now = time.monotonic()
        if now - printed[0] >= PLAIN_EVERY:
            printed[0] = now
            console.print(_line(progress), highlight=False)

    try:
        yield plain
    finally:
        if printed[0] != started and latest:  # lines were printed: the last one is the final state
            console.print(_line(latest[0]), highlight=False)


def summary_table(summary: RunSummary) -> Table:
    table = Table(title="scan summary", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
        ("source", summary.source),
        ("manifest", summary.manifest),
        ("detector", f"{summary.detector.name} {summary.detector.model_version or ''}".strip()),
        ("listed", str(summary.listed)),
        ("recorded before", str(summary.already_done)),
        ("scanned now", str(summary.scanned)),
        *(
            [("of which past the stop", f"{summary.after_stop} (in flight when it came; recorded)")]
            if summary.after_stop
            else []
        ),
        *(
            [("answered, not recorded", f"{summary.unrecorded} (the manifest could not be written)")]
            if summary.unrecorded
            else []
        ),
        ("labeled / skipped / errors", f"{summary.labeled} / {summary.skipped} / {summary.errors}"),
        *([(f"hits for {', '.join(summary.labels)}", str(summary.hits))] if summary.labels else []),
        *(
            [("duplicates", f"{summary.duplicates} (same bytes as an image labelled once; not billed)")]
            if summary.duplicates
            else []
        ),
        ("billed calls", str(summary.billed)),
        ("cost", f"${summary.cost_usd:.4f}"),
        ("stopped because", summary.stopped.value),
        ("took", f"{(summary.finished_at - summary.started_at).total_seconds():.1f} s"),
    ]
    for what, value in rows:
        table.add_row(what, value)
    return table


def reason_lines(progress: ScanProgress, *, limit: int = 10) -> list[str]:
    """Why images were skipped or failed this run: each code, how many, and one message for it."""
    lines = []
    for code, count in progress.reasons.most_common(limit):
        lines.append(f"{code}: {count} image{'s' if count != 1 else ''}, e.g. {progress.examples[code]}")
    if progress.errors:
        lines.append(
            f"{progress.errors} image{'s' if progress.errors != 1 else ''} failed; their records say why. "
            "Run the same command with --retry-errors to try only those again (nothing else is paid twice)."
        )
    return lines


def label_hint(summary: RunSummary) -> str | None:
    """Which labels a run saw most, when it found few or no hits for the label asked."""
    if not summary.labels or (summary.hits > 0 and summary.hits * 20 >= max(1, summary.scanned)):
        return None
    seen = ", ".join(f"{name} ({count})" for name, count in summary.top_labels[:8]) or "none"
    hint = f"Few hits for {', '.join(summary.labels)}. Labels seen most often: {seen}."
    if summary.suggestion:
        hint += f" Did you mean '{summary.suggestion}'?"
    return hint


def export_table(summary: ExportSummary, *, details: int = 10) -> Table:
    """Per label: images and boxes per split, held out, people's decisions; then what was left out."""
    table = Table(title=f"{summary.format} export → {summary.destination}")
    for column in ("label", "images", "boxes", "held out", "by people", "no box"):
        table.add_column(column)
    for label, counts in summary.per_label.items():
        table.add_row(
            label,
            ", ".join(f"{split} {n}" for split, n in sorted(counts.images.items())) or "0",
            ", ".join(f"{split} {n}" for split, n in sorted(counts.boxes.items())) or "0",
            str(counts.held_out),
            str(counts.human),
            str(counts.without_boxes),
        )
    table.caption = "; ".join(
        part
        for part in (
            f"{summary.records} records read"
            + (f" by {summary.workers} worker processes" if summary.workers > 1 else ""),
            f"{summary.copied} copied, {summary.already_there} already there"
            if summary.copied or summary.already_there
            else "",
            f"{summary.replaced} files of the earlier export deleted" if summary.replaced else "",
            "dropped boxes: " + ", ".join(f"{k} {v}" for k, v in summary.dropped_boxes.items())
            if summary.dropped_boxes
            else "",
            "skipped images: " + ", ".join(f"{k} {v}" for k, v in summary.skipped.items())
            if summary.skipped
            else "",
            "rule violations: " + ", ".join(f"{k} {v}" for k, v in summary.violations.items())
            if summary.violations
            else "",
            "dry run: nothing written" if summary.dry_run else "",
        )
        if part
    )
    return table


def export_details(summary: ExportSummary, *, limit: int = 10) -> list[str]:
    lines = [
        f"skipped {issue.source}: {issue.code}: {issue.message}" for issue in summary.skipped_images[:limit]
    ]
    lines += [
        f"line {violation.line}: {violation.rule}: {violation.message}"
        for violation in summary.violation_lines[:limit]
    ]
    lines += [f"would copy {copy.source} → {copy.destination}" for copy in summary.plan[:limit]]
    return lines
