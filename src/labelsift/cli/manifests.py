"""The commands that work on a manifest itself: merge, report, review, import-review; and the demo."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from labelsift import uri
from labelsift.cli.common import (
    MERGE_STOPPED,
    REPORT_STOPPED,
    ExitCode,
    ManifestArgument,
    ParentsOption,
    err,
    fail,
    friendly_errors,
    out,
)
from labelsift.cli.exporting import review_band
from labelsift.demo import run_demo
from labelsift.display import (
    summary_table,
)
from labelsift.gt_import import import_review
from labelsift.ls_import import import_label_studio
from labelsift.manifest import merge
from labelsift.review import run_review
from labelsift.storage import Storage


def merge_command(
    shards: Annotated[
        list[str],
        typer.Argument(
            help="Manifests to merge (local, .gz or s3://); a folder or s3:// prefix stands for the "
            "*.jsonl / *.jsonl.gz shards in it."
        ),
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Merged manifest to write (local, .gz or s3://), whole.")
    ],
    overwrite: Annotated[bool, typer.Option(help="Replace OUTPUT if it exists (never an input).")] = False,
) -> None:
    """Merge manifests into one; the newest record per source wins."""
    with friendly_errors(MERGE_STOPPED):
        for manifest in [*shards, output]:
            uri.parse(manifest, what="manifest")  # a presigned or http(s) URL: exit 2, its query unshown
        result = merge(shards, output, overwrite=overwrite)
    out.print(
        f"{result.records} records, {result.verdicts} verdicts, {result.superseded} superseded → {output}"
    )


def report_command(
    manifest: ManifestArgument,
    output: Annotated[str, typer.Option("--output", "-o", help="HTML file to write (opens offline).")],
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="Label to show; repeatable (default: the 3 seen most)."),
    ] = None,
    threshold: Annotated[
        float, typer.Option(help="The threshold to mark on each curve (0-100).", min=0, max=100)
    ] = 50.0,
    parents: ParentsOption = True,
    samples: Annotated[int, typer.Option(help="Thumbnails per label and band.", min=0, max=100)] = 8,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier report at OUTPUT.")] = False,
) -> None:
    """One self-contained HTML page: what the detector saw, what each threshold keeps, what failed."""
    from labelsift.report import make_report  # Pillow drawing and the page: only for this command

    with friendly_errors(REPORT_STOPPED):
        made = make_report(
            manifest, output, label or [], threshold=threshold, parents=parents, samples_per_band=samples,
            overwrite=overwrite, storage=Storage(),
        )  # fmt: skip
    tally = made.tally
    shown = ", ".join(item.name for item in tally.labels) or "none"
    out.print(f"{tally.records:,} records, labels shown: {shown} → {output}", highlight=False, markup=False)
    for name, closest in made.unmatched.items():
        hint = f" Did you mean {closest!r}?" if closest else ""
        err.print(f"warning: no record has the label {name!r}.{hint}", highlight=False, markup=False)


def review_command(
    manifest: Annotated[str, typer.Argument(help="Local manifest; verdicts are appended to it.")],
    label: Annotated[str, typer.Option("--label", "-l", help="Label to review.")],
    band: Annotated[str, typer.Option(help="LOW:HIGH confidences to review.")] = "50:80",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = any free port).")] = 0,
    who: Annotated[str, typer.Option(help="Name recorded with each verdict.")] = "reviewer",
) -> None:
    """Serve a local page on 127.0.0.1 to accept or reject the uncertain images, one key each."""
    low_high = review_band(band)
    assert low_high is not None
    with friendly_errors():
        run_review(manifest, label, low_high, storage=Storage(), port=port, who=who, echo=out.print)


def import_review_command(
    manifest: Annotated[str, typer.Argument(help="Local manifest to add the verdicts to.")],
    gt_output: Annotated[
        str,
        typer.Argument(help="Ground Truth output manifest, or Label Studio JSON export (local or s3://)."),
    ],
    label: Annotated[
        str | None, typer.Option("--label", "-l", help="The label the job answered about.")
    ] = None,
    source_format: Annotated[
        str, typer.Option("--from", help="groundtruth (output manifest) | label-studio (JSON export)")
    ] = "groundtruth",
    who: Annotated[
        str | None, typer.Option(help="Name recorded with each verdict (default: the tool's name).")
    ] = None,
) -> None:
    """Record people's answers (a Ground Truth job's, or Label Studio's annotations) as verdicts."""
    if source_format not in ("groundtruth", "label-studio"):
        fail(f"--from {source_format!r}: choose groundtruth or label-studio.", ExitCode.USAGE)
    with friendly_errors():
        if source_format == "label-studio":
            labels = [label] if label is not None else None
            summary: Any = import_label_studio(manifest, gt_output, labels=labels, who=who or "label-studio")
        else:
            summary = import_review(manifest, gt_output, label=label, who=who or "groundtruth")
    out.print(summary.report(), highlight=False)


def demo_command(
    output: Annotated[
        str, typer.Argument(help="Folder for the manifest and the exports.")
    ] = "labelsift-demo",
) -> None:
    """The main job on the bundled photos with the offline model: scan, then export two layouts."""
    with friendly_errors():
        folder = uri.parse(output, what="demo folder")
        if not isinstance(folder, uri.LocalLocation):
            fail(f"{folder}: the demo writes into a local folder; give a path.", ExitCode.USAGE)
        result = run_demo(folder.path, on_progress=lambda line: out.print(line, highlight=False))
    out.print(summary_table(result.scan))
    for line in result.report():
        out.print(line, highlight=False)
