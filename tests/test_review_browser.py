"""The review page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from labelsift.manifest import ManifestWriter, iter_records
from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, ScanStatus
from labelsift.review import serve_review
from labelsift.storage import Storage

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
BAND = (20.0, 90.0)
COUNT = 60

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium` "
        "(never `playwright install`) to run the review page tests",
        allow_module_level=True,
    )
pytest.importorskip("playwright.sync_api", reason="pip install playwright to run the browser tests")
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


def make_manifest(tmp_path: Path) -> tuple[Path, dict[str, float]]:
    """60 generated photos of a 'bird' (an ellipse) at known places, confidences 1.5 .. 99."""
    images = tmp_path / "images"
    images.mkdir()
    manifest = tmp_path / "manifest.jsonl"
    confidences: dict[str, float] = {}
    with ManifestWriter(manifest) as writer:
        for i in range(COUNT):
            width, height = (640, 480) if i % 3 else (480, 640)
            path = images / f"photo-{i:02d}.jpg"
            image = Image.new("RGB", (width, height), (110 + i, 160, 210 - i))
            draw = ImageDraw.Draw(image)
            left, top, w, h = 0.15 + (i % 5) * 0.05, 0.2, 0.45, 0.5
            draw.ellipse(
                (left * width, top * height, (left + w) * width, (top + h) * height),
                fill=(60, 40, 20 + 3 * i),
            )
            image.save(path, "JPEG", quality=90)
            confidence = round(1.5 + i * (97.5 / (COUNT - 1)), 1)
            confidences[str(path)] = confidence
            writer.append(
                ImageRecord(
                    source=str(path),
                    width=width,
                    height=height,
                    format="JPEG",
                    status=ScanStatus.LABELED,
                    detector=DetectorInfo(name="test"),
                    labels=[
                        Label(
                            name="Bird",
                            confidence=confidence,
                            parents=["Animal"],
                            instances=[
                                Instance(left=left, top=top, width=w, height=h, confidence=confidence)
                            ],
                        )
                    ],
                )
            )
    return manifest, confidences


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: Browser, errors: list[str]) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def verdicts(manifest: Path) -> dict[str, list[bool]]:
    return {r.source: [v.accepted for v in r.review] for r in iter_records(str(manifest)) if r.review}


def test_review_page(browser: Browser, tmp_path: Path) -> None:
    manifest, confidences = make_manifest(tmp_path)
    in_band = sorted((c for c in confidences.values() if BAND[0] <= c <= BAND[1]), reverse=True)
    errors: list[str] = []
    with serve_review(manifest, "animal", BAND, storage=Storage(), page_size=24, who="tester") as server:
        page = new_page(browser, errors)
        page.goto(server.url)
        cards = page.locator(".card")
        expect(cards).to_have_count(24)
        expect(page.locator("#page-text")).to_have_text(f"Page 1 of {-(-len(in_band) // 24)}")
        expect(page.locator("#progress-text")).to_contain_text(f"0 of {len(in_band)} done")
        shown = [float(t.rstrip("%")) for t in page.locator(".card .conf").all_inner_texts()]
        assert shown == in_band[:24]  # sorted by confidence, highest first

        # every image loads (scaled JPEG through the server) and its box sits where the ratios say
        page.wait_for_function(
            "() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert (
            page.evaluate("Math.max(...[...document.querySelectorAll('.card img')].map(i => i.naturalWidth))")
            <= 512
        )
        first = cards.nth(0)
        name = first.locator(".name").get_attribute("title")
        assert name is not None
        img, box = first.locator("img").bounding_box(), first.locator(".box").bounding_box()
        assert img is not None and box is not None
        index = int(Path(name).stem.split("-")[1])
        left = 0.15 + (index % 5) * 0.05
        assert abs(box["x"] - (img["x"] + left * img["width"])) < 2.5
        assert abs(box["y"] - (img["y"] + 0.2 * img["height"])) < 2.5
        assert abs(box["width"] - 0.45 * img["width"]) < 2.5
        assert abs(box["height"] - 0.5 * img["height"]) < 2.5

        # accept the first by click
        first.locator("button.accept").click()
        expect(first).to_have_class(_has("state-accepted"))
        # then keys: j j moves focus two cards on, r rejects it (focus moves on), s skips the next
        page.keyboard.press("j")
        page.keyboard.press("ArrowRight")
        expect(cards.nth(2)).to_have_class(_has("focused"))
        page.keyboard.press("r")
        expect(cards.nth(2)).to_have_class(_has("state-rejected"))
        expect(cards.nth(3)).to_have_class(_has("focused"))
        assert page.evaluate("document.activeElement.dataset.index") == "3"
        page.keyboard.press("s")
        expect(cards.nth(3)).to_have_class(_has("state-skipped"))
        page.keyboard.press("k")
        expect(cards.nth(3)).to_have_class(_has("focused"))
        expect(page.locator("#progress-text")).to_contain_text(
            f"2 of {len(in_band)} done · {len(in_band) - 2} left · 1 accepted · 1 rejected · 1 skipped"
        )
        sources = [cards.nth(i).locator(".name").get_attribute("title") for i in range(4)]
        assert verdicts(manifest) == {sources[0]: [True], sources[2]: [False]}

        # reload: the page shows the verdicts it reads back from the server's state
        page.reload()
        expect(cards).to_have_count(24)
        expect(cards.nth(0)).to_have_class(_has("state-accepted"))
        expect(cards.nth(2)).to_have_class(_has("state-rejected"))
        expect(cards.nth(0).locator(".badge")).to_have_text("accepted")
        expect(page.locator("#progress-text")).to_contain_text(f"2 of {len(in_band)} done")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        page.keyboard.press("j")
        page.keyboard.press("j")
        page.keyboard.press("ArrowDown")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "review-page.png"))

        # next page by key, accept all undecided there by button
        page.keyboard.press("n")
        expect(page.locator("#page-text")).to_have_text("Page 2 of 2")
        assert page.url.endswith("#page=2")
        expect(cards).to_have_count(len(in_band) - 24)
        page.locator("#accept-page").click()
        expect(page.locator(".card.state-accepted")).to_have_count(len(in_band) - 24)
        expect(page.locator("#progress-text")).to_contain_text(f"{len(in_band) - 22} of {len(in_band)}")
        page.close()

    # a restarted server (a killed one loses nothing) shows the same state from the manifest alone
    with serve_review(manifest, "Animal", BAND, storage=Storage(), page_size=24) as server:
        page = new_page(browser, errors)
        page.goto(server.url)
        expect(cards := page.locator(".card")).to_have_count(24)
        expect(cards.nth(0)).to_have_class(_has("state-accepted"))
        expect(cards.nth(2)).to_have_class(_has("state-rejected"))
        expect(cards.nth(3)).not_to_have_class(_has("state-skipped"))  # a skip is not a verdict
        page.close()
    decided = verdicts(manifest)
    assert len(decided) == len(in_band) - 24 + 2
    assert all(len(v) == 1 for v in decided.values())
    assert errors == []


def test_empty_band_is_said_clearly(browser: Browser, tmp_path: Path) -> None:
    manifest, _ = make_manifest(tmp_path)
    errors: list[str] = []
    with serve_review(manifest, "Bird", (99.5, 100.0), storage=Storage()) as server:
        page = new_page(browser, errors)
        page.goto(server.url)
        empty = page.locator("#empty")
        expect(empty).to_be_visible()
        expect(empty).to_contain_text("Nothing to review")
        expect(empty).to_contain_text(f"{COUNT} image(s) match “Bird” outside that band")
        expect(page.locator(".card")).to_have_count(0)
        page.close()
    assert errors == []


def _has(name: str) -> re.Pattern[str]:
    return re.compile(rf"(^|\s){re.escape(name)}(\s|$)")
