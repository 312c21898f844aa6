"""The report page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_corpus import GREY, PROBE_BOX, expected_counts, make_corpus

from labelsift.report import make_report
from labelsift.storage import Storage

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium`",
        allow_module_level=True,
    )
pytest.importorskip("playwright.sync_api", reason="pip install playwright to run the browser tests")
from playwright.sync_api import Browser, sync_playwright  # noqa: E402

PIXEL_AT = """([src, x, y]) => {
  const img = [...document.images].find(i => i.alt === src);
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  return [img.naturalWidth, img.naturalHeight, [...context.getImageData(x, y, 1, 1).data].slice(0, 3)];
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )  # fmt: skip
        try:
            yield launched
        finally:
            launched.close()


def _near(colour: list[int], want: tuple[int, int, int], slack: int = 40) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(colour, want, strict=True))


def test_report_page_renders_counts_thumbnails_and_boxes(browser: Browser, tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path)
    want = expected_counts(corpus.manifest, "Dog", 80.0)
    out = tmp_path / "report.html"
    make_report(
        str(corpus.manifest), str(out), ["Dog"], threshold=80.0, samples_per_band=50, storage=Storage()
    )
    errors: list[str] = []
    requests: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(out.as_uri())

    for section in ("#run", "#labels", 'section.label[data-label="Dog"]', "#failures"):
        assert page.locator(section).is_visible(), section
    assert page.locator('section.label[data-label="Dog"] .curve svg polyline').count() == 2
    assert page.locator('section.label[data-label="Dog"] .histogram svg rect').count() == 20

    statuses = want["statuses"]
    assert page.inner_text('[data-status="all"]') == f"{want['records']:,}"
    for status in ("labeled", "skipped", "error"):
        assert page.inner_text(f'[data-status="{status}"]') == f"{statuses[status]:,}"  # type: ignore[index]
    assert page.inner_text("#billed") == f"{want['billed']:,}"
    dog = page.locator('section.label[data-label="Dog"]')
    assert dog.locator(".images-total").inner_text() == f"{want['images']:,}"
    assert dog.locator(".kept-images").inner_text() == f"{want['kept_images']:,}"
    assert dog.locator(".kept-boxes").inner_text() == f"{want['kept_boxes']:,}"
    assert f"People accepted {want['accepted']} and rejected {want['rejected']}" in dog.inner_text()
    failures = page.locator("#failures tr")
    assert failures.count() - 1 == sum(want["reasons"].values())  # type: ignore[attr-defined]

    # every thumbnail loads; the unreadable one says why instead
    page.wait_for_function("() => [...document.images].every(i => i.complete)")
    widths = page.evaluate("[...document.images].map(i => i.naturalWidth)")
    assert widths and all(width > 0 for width in widths)
    assert len(widths) == want["images"] - 1  # all samples (50 a band) but the broken file
    assert str(corpus.broken) in dog.locator(".missing").inner_text()

    # the probe (stored sideways, EXIF 6) is shown upright, its box in red at the ratios' pixels
    left, top, width, height = PROBE_BOX
    w, h, edge = page.evaluate(
        PIXEL_AT, [str(corpus.probe), round(left * 240) + 1, round((top + height / 2) * 180)]
    )
    assert (w, h) == (240, 180)
    assert _near(edge, (255, 0, 0)), edge
    _, _, inside = page.evaluate(PIXEL_AT, [str(corpus.probe), round((left + width / 2) * 240), 90])
    _, _, outside = page.evaluate(PIXEL_AT, [str(corpus.probe), round(left * 240) - 8, 90])
    _, _, top_edge = page.evaluate(PIXEL_AT, [str(corpus.probe), 120, round(top * 180) + 1])
    assert _near(inside, GREY) and _near(outside, GREY) and _near(top_edge, (255, 0, 0)), (inside, outside)

    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.close()
