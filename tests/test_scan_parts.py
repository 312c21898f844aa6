"""The scan loop's parts, each on its own: the in-order window, the budget, the stopping rules,
and the loop they make against a stub detector. No server, no model: each test runs in
milliseconds."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from labelsift.cost import PriceTable, PriceTier
from labelsift.detectors.base import Detection, DetectorError, ImageInput
from labelsift.manifest import iter_records
from labelsift.models import DetectorInfo, ImageRecord, Label, Reason, RunSummary, ScanStatus, StopReason
from labelsift.scan import ScanAborted, scan
from labelsift.scanning.budget import Budget
from labelsift.scanning.options import Outcome, ScanOptions, ScanProgress
from labelsift.scanning.rules import StoppingRules
from labelsift.scanning.window import InOrderWindow
from labelsift.select import Selection
from labelsift.storage import ObjectInfo, Storage


def _info(n: int) -> ObjectInfo:
    return ObjectInfo(uri=f"s3://b/{n}.jpg", key=f"{n}.jpg", size=10, etag=f'"{n}"')


def _outcome(n: int, hit: bool | None, fresh: bool = True) -> Outcome:
    return Outcome(_info(n), None, hit, billed=False, fresh=fresh)


def _record(n: int, status: ScanStatus = ScanStatus.LABELED) -> ImageRecord:
    if status is ScanStatus.LABELED:
        dog = [Label(name="Dog", confidence=90.0)]
        return ImageRecord(source=_info(n).uri, status=status, detector=DetectorInfo(name="stub"), labels=dog)

    return ImageRecord(
        source=_info(n).uri, status=status, error=Reason(code="Throttled", message="slow down")
    )


# -- the window -----------------------------------------------------------------------------------


def test_the_window_lets_outcomes_out_in_source_order_whatever_order_requests_finish_in() -> None:
    window: InOrderWindow[int] = InOrderWindow()
    gates = [threading.Event() for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        for n in range(3):
            at = window.take_position()
            window.send(pool.submit(lambda n=n: gates[n].wait(5) and n), at, _info(n))
        gates[2].set()  # the last one finishes first
        finished = window.wait(timeout=5)
        assert [at for _, at, _ in finished] == [2]
        window.settle(2, _outcome(2, True))
        assert window.next_in_order() is None  # 0 and 1 are not in yet
        gates[0].set()
        gates[1].set()
        while window.pending:
            for _, at, info in window.wait(timeout=5):
                window.settle(at, Outcome(info, None, False, billed=False, fresh=True))
    out = []
    while (outcome := window.next_in_order()) is not None:
        out.append(outcome.info.uri)
    assert out == [_info(0).uri, _info(1).uri, _info(2).uri]
    assert window.next_out == window.next_in == 3


def test_the_window_bounds_how_far_positions_run_ahead_of_the_next_outcome() -> None:
    window: InOrderWindow[int] = InOrderWindow()
    taken = 0
    while window.has_room(ahead=4):
        window.take_position()
        taken += 1
    assert taken == 4
    window.settle(0, _outcome(0, None))
    assert not window.has_room(ahead=4)  # settled but not yet out: the bound does not move
    assert window.next_in_order() is not None
    assert window.has_room(ahead=4)


def test_dropping_cancelled_requests_forgets_only_those_that_had_not_started() -> None:
    window: InOrderWindow[int] = InOrderWindow()
    started, release = threading.Event(), threading.Event()

    def running() -> int:
        started.set()
        release.wait(5)
        return 0

    with ThreadPoolExecutor(1) as pool:
        window.send(pool.submit(running), window.take_position(), _info(0))
        assert started.wait(5)
        for n in (1, 2):  # queued behind the one worker
            window.send(pool.submit(int, n), window.take_position(), _info(n))
        assert sorted(window.drop_cancelled()) == [1, 2]
        assert [at for at, _ in window.pending.values()] == [0]
        release.set()
        assert [at for _, at, _ in window.wait(timeout=5)] == [0]
    assert window.pending == {}


# -- the budget -----------------------------------------------------------------------------------


def _prices() -> PriceTable:
    return PriceTable(detector_tiers=[PriceTier(up_to=2, usd_per_image=1.0), PriceTier(usd_per_image=0.5)])


def test_the_budget_holds_the_price_of_requests_in_flight_so_it_is_never_passed() -> None:
    progress = ScanProgress()
    budget = Budget(progress, _prices(), limit=2.5)
    assert budget.hold(0) and budget.hold(1)  # 1.0 + 1.0
    assert budget.reserved == 2.0
    assert budget.hold(2)  # the third image is in the cheaper tier: 2.5 exactly fits
    assert not budget.hold(3)
    assert budget.reserved == 2.5


def test_the_budget_pays_billed_answers_in_tier_order_and_frees_the_rest() -> None:
    progress = ScanProgress()
    budget = Budget(progress, _prices(), limit=2.5)
    for at in range(3):
        budget.hold(at)
    budget.settle(0, billed=True)
    budget.settle(1, billed=False)  # e.g. a skipped image: nothing paid, the hold ends
    budget.release(2)  # cancelled
    assert (progress.billed, progress.cost_usd, budget.reserved) == (1, 1.0, 0.0)
    assert budget.hold(3) and budget.hold(4)  # 1.0 spent + 1.0 + 0.5 held
    assert not budget.hold(5)


def test_without_a_limit_every_request_goes_and_billed_answers_are_still_counted() -> None:
    progress = ScanProgress()
    budget = Budget(progress, _prices(), limit=None)
    assert all(budget.hold(at) for at in range(100))
    assert budget.reserved == 0.0
    for at in range(3):
        budget.settle(at, billed=True)
    assert (progress.billed, progress.cost_usd) == (3, 2.5)


# -- the rules ------------------------------------------------------------------------------------


def test_the_target_stops_at_the_hit_that_reaches_it() -> None:
    rules = StoppingRules(ScanOptions(target=2), ScanProgress())
    for n, hit in enumerate([True, False, None, True]):
        assert rules.stopped is None
        rules.feed(_outcome(n, hit))
    assert (rules.stopped, rules.progress.hits, rules.progress.considered) == (StopReason.TARGET, 2, 4)


def test_patience_counts_misses_in_a_row_and_a_hit_starts_it_again() -> None:
    rules = StoppingRules(ScanOptions(patience=2), ScanProgress())
    for n, hit in enumerate([False, True, False, None]):  # a skipped image (None) is not a miss
        rules.feed(_outcome(n, hit))
    assert rules.stopped is None
    rules.feed(_outcome(4, False))
    assert rules.stopped is StopReason.PATIENCE


def test_max_images_counts_sources_an_earlier_run_recorded() -> None:
    rules = StoppingRules(ScanOptions(max_images=3), ScanProgress())
    rules.feed(_outcome(0, None, fresh=False))
    rules.feed(_outcome(1, None, fresh=False))
    assert rules.stopped is None
    rules.feed(_outcome(2, None))
    assert rules.stopped is StopReason.MAX_IMAGES
    assert rules.fed_fresh == 1


def test_an_outage_is_errors_in_a_row_and_a_success_between_them_resets_it() -> None:
    rules = StoppingRules(ScanOptions(max_errors_in_row=2), ScanProgress())
    rules.answered(_record(0, ScanStatus.ERROR))
    rules.answered(_record(1))
    rules.answered(_record(2, ScanStatus.ERROR))
    assert rules.stopped is None
    rules.answered(_record(3, ScanStatus.ERROR))
    assert rules.stopped is StopReason.FAILED
    assert rules.outage is not None and rules.outage.source == _info(3).uri


def test_the_lookahead_shrinks_as_a_stop_comes_near() -> None:
    progress = ScanProgress()
    rules = StoppingRules(ScanOptions(workers=4, target=10, max_errors_in_row=None), progress)
    assert rules.lookahead() == 14  # workers + hits still to find, under workers * 4
    progress.hits = 9
    assert rules.lookahead() == 5
    progress.hits = 20
    assert rules.lookahead() == 1  # never zero: the loop always makes progress


def test_written_records_are_counted_with_their_reasons() -> None:
    rules = StoppingRules(ScanOptions(), ScanProgress())
    rules.written(_record(0))
    rules.written(_record(1, ScanStatus.ERROR))
    progress = rules.progress
    assert (progress.scanned, progress.errors, progress.skipped) == (2, 1, 0)
    assert progress.reasons == {"Throttled": 1}
    assert rules.seen_labels == {"Dog": 1}


# -- the loop they make, against a stub detector --------------------------------------------------


class StubDetector:
    """Says "Dog" for images whose name holds "dog", "Cat" otherwise; fails where told to."""

    def __init__(self, fail: set[str] | None = None, fatal: bool = False, billable: bool = True) -> None:
        self.calls: list[str] = []
        self.fail = fail or set()
        self.fatal = fatal
        self._billable = billable
        self._lock = threading.Lock()

    @property
    def info(self) -> DetectorInfo:
        return DetectorInfo(name="stub")

    @property
    def billable(self) -> bool:
        return self._billable

    def detect(self, image: ImageInput) -> Detection:
        name = Path(image.uri).name
        with self._lock:
            self.calls.append(name)
        if name in self.fail:
            raise DetectorError("ServiceDown", "the stub is down", fatal=self.fatal)
        label = "Dog" if "dog" in name else "Cat"
        return Detection(labels=[Label(name=label, confidence=95.0)])


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for shade, name in enumerate(["a-cat", "b-dog", "c-cat", "d-dog", "e-dog", "f-cat"]):
        Image.new("RGB", (100, 100), (shade, 0, 0)).save(images / f"{name}.png")  # distinct bytes
    return images


def _scan(
    folder: Path, manifest: Path, detector: StubDetector, **options: Any
) -> tuple[RunSummary, list[str]]:
    options = {"selection": Selection(labels=("Dog",), threshold=50.0), "workers": 2} | options
    summary = scan(str(folder), str(manifest), detector, Storage(), ScanOptions(**options))
    return summary, [record.source.rsplit("/", 1)[1] for record in iter_records(str(manifest))]


def test_the_loop_stops_at_the_target_in_source_order_and_a_rerun_asks_nothing_again(
    folder: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.jsonl"
    detector = StubDetector()
    summary, records = _scan(folder, manifest, detector, target=2)
    assert summary.stopped is StopReason.TARGET
    assert summary.hits == 2
    in_order = sorted(records)  # written as answers come; the stop is found in source order
    assert in_order[:4] == ["a-cat.png", "b-dog.png", "c-cat.png", "d-dog.png"]
    assert summary.after_stop == len(records) - 4  # in flight past the stop, written, counted
    again = StubDetector()
    summary, _ = _scan(folder, manifest, again, target=2)
    assert again.calls == [] and summary.already_done == 4


def test_the_loop_stops_inside_the_budget(folder: Path, tmp_path: Path) -> None:
    detector = StubDetector()
    summary, records = _scan(folder, tmp_path / "m.jsonl", detector, budget=0.003)
    assert summary.stopped is StopReason.BUDGET
    assert len(detector.calls) == len(records) == 3
    assert summary.cost_usd == pytest.approx(0.003)


def test_a_fatal_detector_error_aborts_with_every_answer_that_came_kept(folder: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    with pytest.raises(ScanAborted, match="the stub is down") as raised:
        _scan(folder, manifest, StubDetector(fail={"c-cat.png"}, fatal=True), workers=1)
    assert raised.value.summary.stopped is StopReason.FAILED
    kept = [record.source.rsplit("/", 1)[1] for record in iter_records(str(manifest))]
    assert {"a-cat.png", "b-dog.png"} <= set(kept)  # answered before the fault (and any in flight)
    assert "c-cat.png" not in kept  # the failed call leaves no half record


def test_an_outage_stops_the_loop_and_names_the_last_error(folder: Path, tmp_path: Path) -> None:
    names = {"a-cat.png", "b-dog.png", "c-cat.png", "d-dog.png", "e-dog.png", "f-cat.png"}
    with pytest.raises(ScanAborted, match="2 images in a row failed, the last ServiceDown"):
        _scan(folder, tmp_path / "m.jsonl", StubDetector(fail=names), workers=1, max_errors_in_row=2)
