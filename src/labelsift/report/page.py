"""The report as one self-contained HTML page: a template over `Report` (styles and images inline)."""

from __future__ import annotations

import base64
from html import escape

from .charts import histogram, threshold_curve
from .collect import MAX_DISTINCT_LABELS, MAX_NAME, QUALITY_METRICS, Band, LabelReport, Sample
from .data import Report

MARKER = "<!-- labelsift report -->"
STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
svg text{font-size:11px;fill:#444}.axis{stroke:#888}.images{fill:none;stroke:#1f6fd1;stroke-width:2}
.boxes{fill:none;stroke:#e08a1e;stroke-width:2}.chosen{stroke:#c00;stroke-dasharray:4 3}.bar{fill:#1f6fd1}
.key span{display:inline-block;width:12px;height:3px;margin:0 4px 3px 12px}
.sheet{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:244px;font-size:12px}
figure img{display:block;max-width:240px;max-height:240px;border:1px solid #ccc}
figcaption{word-break:break-all}.problem{width:240px;height:80px;background:#fee;border:1px solid #e99;
padding:4px;overflow:hidden}.yes{color:#080}.no{color:#c00}.muted{color:#777}
"""


ACCEPTED = '<span class="yes">✔ accepted</span> '
REJECTED = '<span class="no">✘ rejected</span> '


def _n(value: int) -> str:
    return f'<td class="n">{value:,}</td>'


def _run(report: Report) -> str:
    tally = report.tally
    statuses = "".join(
        f'<tr><th>{escape(status)}</th><td class="n" data-status="{escape(status)}">'
        f"{tally.by_status[status]:,}</td></tr>"
        for status in ("labeled", "skipped", "error")
    )
    detectors = "".join(
        f"<tr><td>{escape(name)}</td><td>{escape(version or '—')}</td>{_n(count)}</tr>"
        for (name, version), count in tally.detectors.most_common()
    )
    reasons = "".join(
        f"<tr><td>{escape(row.status)}</td><td><code>{escape(row.code)}</code></td>{_n(row.count)}"
        f"<td>{'<br>'.join(escape(source) for source in row.examples)}</td><td>{escape(row.advice)}</td></tr>"
        for row in sorted(tally.reasons.values(), key=lambda r: -r.count)
    )
    dates = "—"
    if tally.first_scan is not None and tally.last_scan is not None:
        dates = f"{tally.first_scan:%Y-%m-%d %H:%M} – {tally.last_scan:%Y-%m-%d %H:%M} UTC"
    return (
        f'<section id="run"><h2>The run</h2><table><tr><th>images</th>'
        f'<td class="n" data-status="all">{tally.records:,}</td></tr>{statuses}'
        f'<tr><th>billed calls</th><td class="n" id="billed">{tally.billed:,}</td></tr>'
        f'<tr><th>cost (list price)</th><td class="n" id="cost">${report.cost_usd:,.2f}</td></tr>'
        f"<tr><th>scanned</th><td>{dates}</td></tr></table>"
        f"<table><tr><th>detector</th><th>model version</th><th>images</th></tr>{detectors}</table>"
        f"<h3>Why images were skipped or failed</h3><table id=reasons><tr><th>status</th><th>reason</th>"
        f"<th>images</th><th>examples</th><th>what to do</th></tr>{reasons}</table></section>"
    )


def _labels(report: Report) -> str:
    rows = "".join(
        f'<tr data-label="{escape(name)}"><td>{escape(name)}</td>{_n(images)}{_n(boxes)}'
        f"<td>{escape(', '.join(parents))}</td></tr>"
        for name, images, boxes, parents in report.top_labels
    )
    return (
        f'<section id="labels"><h2>What is in the pile</h2><p>The {len(report.top_labels)} labels seen '
        f"on the most images, of {len(report.tally.label_images):,}{_capped(report)} distinct labels.</p>"
        f"<table><tr><th>label</th><th>images</th><th>boxes</th><th>parents</th></tr>{rows}</table></section>"
    )


def _capped(report: Report) -> str:
    untracked = report.tally.untracked_labels
    return f"+ (labels met after the first {MAX_DISTINCT_LABELS:,} were not counted)" if untracked else ""


def _figure(sample: Sample) -> str:
    verdict = ""
    if sample.verdict is not None:
        verdict = ACCEPTED if sample.verdict else REJECTED
    caption = (
        f"<figcaption>{verdict}{sample.confidence:.1f}% · {len(sample.boxes)} box"
        f"{'es' if len(sample.boxes) != 1 else ''}<br>{escape(sample.source[:MAX_NAME])}</figcaption>"
    )
    if sample.thumbnail is None:
        problem = escape(sample.problem or "no thumbnail")
        return f'<figure class="missing"><div class="problem">{problem}</div>{caption}</figure>'
    data = base64.b64encode(sample.thumbnail).decode("ascii")
    alt = escape(sample.source[:MAX_NAME], quote=True)
    return f'<figure><img src="data:image/jpeg;base64,{data}" alt="{alt}" title="{alt}">{caption}</figure>'


KEY = (
    '<p class="key"><span style="background:#1f6fd1"></span>images'
    '<span style="background:#e08a1e"></span>boxes<span style="background:#c00"></span>chosen threshold</p>'
)


def _band(band: Band) -> str:
    figures = "".join(map(_figure, band.samples))
    return (
        f'<h4>{escape(band.name)} <span class="muted">({band.images:,} images; '
        f"{len(band.samples)} shown)</span></h4>"
        f'<div class="sheet" data-band="{escape(band.name)}">{figures}</div>'
    )


def _label(label: LabelReport) -> str:
    kept_images, kept_boxes = label.kept(label.threshold)
    return (
        f'<section class="label" data-label="{escape(label.name)}"><h2>{escape(label.name)}</h2>'
        f'<p><span class="images-total">{label.images:,}</span> images name it; at ≥ {label.threshold:g}: '
        f'<span class="kept-images">{kept_images:,}</span> images, '
        f'<span class="kept-boxes">{kept_boxes:,}</span> boxes. '
        f"People accepted {label.accepted:,} and rejected {label.rejected:,}.</p>{KEY}"
        f'<div class="curve">{threshold_curve(label)}</div><div class="histogram">{histogram(label)}</div>'
        f"<h3>What each band lets in</h3>{''.join(map(_band, label.bands))}</section>"
    )


def _failures(report: Report) -> str:
    tally = report.tally
    rows = "".join(
        f"<tr><td>{escape(row.source)}</td><td>{escape(row.status)}</td><td><code>{escape(row.code)}</code></td>"
        f"<td>{escape(row.message)}</td><td>{escape(row.advice)}</td></tr>"
        for row in tally.failures
    )
    more = tally.failures_total - len(tally.failures)
    note = (
        f'<p>…and {more:,} more: <code>grep -v \'"status": *"labeled"\' MANIFEST</code> lists every one.</p>'
        if more > 0
        else ""
    )
    return (
        f'<section id="failures"><h2>Images skipped or failed ({tally.failures_total:,})</h2>'
        f"<table><tr><th>source</th><th>status</th><th>reason</th><th>message</th><th>what to do</th></tr>"
        f"{rows}</table>{note}</section>"
    )


QUALITY_STEPS = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90)


def _quality(report: Report) -> str:
    """How many images each `--min-sharpness`/`--min-brightness` keeps (scans with --image-properties)."""
    tally = report.tally
    if not tally.with_quality:
        return ""
    head = "".join(f"<th>≥ {step}</th>" for step in QUALITY_STEPS)
    rows = "".join(
        f"<tr><td>{metric}</td>"
        + "".join(_n(tally.at_least(metric, step)) for step in QUALITY_STEPS)
        + "</tr>"
        for metric in QUALITY_METRICS
    )
    return (
        f'<section id="quality"><h2>Image quality</h2><p>{tally.with_quality:,} of {tally.records:,} '
        "records have Rekognition's image properties (scan --image-properties). Images kept by each "
        "minimum (export --min-sharpness N, --min-brightness N):</p>"
        f"<table><tr><th>score</th>{head}</tr>{rows}</table></section>"
    )


def render(report: Report) -> str:
    labels = "".join(map(_label, report.tally.labels))
    title = f"labelsift report: {report.tally.manifest}"
    return (
        f'<!DOCTYPE html>\n{MARKER}\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
        f"<p class=muted>Made {report.made_at:%Y-%m-%d %H:%M} UTC from {report.tally.records:,} records.</p>"
        f"{_run(report)}{_labels(report)}{_quality(report)}{labels}{_failures(report)}</body></html>\n"
    )
