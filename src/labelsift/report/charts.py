"""Charts as inline SVG: plain shapes, no script, no library, so the page opens anywhere offline."""

from __future__ import annotations

from html import escape

from .collect import LabelReport

WIDTH, HEIGHT, PAD = 640, 220, 40


def _x(threshold: float) -> float:
    return PAD + threshold * (WIDTH - 2 * PAD) / 100


def _y(value: int, top: int) -> float:
    return HEIGHT - PAD - (value / top if top else 0) * (HEIGHT - 2 * PAD)


def _axes(top: int, what: str) -> list[str]:
    parts = [
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" class="axis"/>',
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{top:,}</text>',
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">0</text>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(what)}</text>',
    ]
    for tick in range(0, 101, 10):
        parts.append(f'<text x="{_x(tick):.1f}" y="{HEIGHT - PAD + 14}" text-anchor="middle">{tick}</text>')
    return parts


def threshold_curve(report: LabelReport) -> str:
    """Images and boxes kept at every whole threshold, the chosen threshold marked."""
    points = report.curve()
    top = max(1, max(max(images, boxes) for _, images, boxes in points))
    images_line = " ".join(f"{_x(t):.1f},{_y(i, top):.1f}" for t, i, _ in points)
    boxes_line = " ".join(f"{_x(t):.1f},{_y(b, top):.1f}" for t, _, b in points)
    kept_images, kept_boxes = report.kept(report.threshold)
    x = _x(report.threshold)
    parts = [
        *_axes(top, "threshold (confidence ≥ T)"),
        f'<polyline points="{boxes_line}" class="boxes"/>',
        f'<polyline points="{images_line}" class="images"/>',
        f'<line x1="{x:.1f}" y1="{PAD - 10}" x2="{x:.1f}" y2="{HEIGHT - PAD}" class="chosen"/>',
        f'<text x="{x + 4:.1f}" y="{PAD - 14}">{report.threshold:g}: {kept_images:,} images, '
        f"{kept_boxes:,} boxes</text>",
    ]
    return _svg(parts, f"Images and boxes of {report.name} kept at each threshold")


def histogram(report: LabelReport, width: int = 5) -> str:
    """Images by the label's best confidence, in bins of `width` points."""
    bins = [sum(report.image_buckets[start : start + width]) for start in range(0, 101, width)]
    bins[-2] += bins.pop()  # 100 goes with 95-99
    top = max(1, *bins)
    step = (WIDTH - 2 * PAD) / len(bins)
    parts = _axes(top, "confidence")
    for index, count in enumerate(bins):
        y = _y(count, top)
        low = index * width
        parts.append(
            f'<rect x="{PAD + index * step + 1:.1f}" y="{y:.1f}" width="{step - 2:.1f}" '
            f'height="{HEIGHT - PAD - y:.1f}" class="bar"><title>{low}–{low + width}: {count:,} images'
            "</title></rect>"
        )
    return _svg(parts, f"Confidence of {report.name}")


def _svg(parts: list[str], title: str) -> str:
    body = "".join(parts)
    return (
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>{body}</svg>'
    )
