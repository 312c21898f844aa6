"""Spending controls that hold across every actor of a Ray scan.

`Coordinator` (one named actor per run) counts images, money, hits and errors in a row for the
whole cluster: an actor asks it before each image (`ask` reserves that image's price) and tells it
what the image came to afterwards (`settle`). Once a limit is reached every further `ask` is
refused, so after a stop only the images already granted (in flight) are spent, and they are
written. `RateKeeper` (one named actor) hands out start times for Rekognition calls, so N actors
together never exceed one account-wide rate.

Both are plain classes: the driver turns them into actors with `ray.remote`, and the tests can
check their arithmetic without a cluster. `Gate` and `SharedRate` are what an actor holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from labelsift.cost import PriceTable
from labelsift.models import StopReason


@dataclass(frozen=True)
class Limits:
    """What the whole run may do. `images` counts the images this run may label (the driver has
    already taken off what earlier runs did); `hits` starts at the hits earlier runs found."""

    images: int | None = None
    target: int | None = None
    budget: float | None = None  # None, or the detector is free: no budget to keep
    prices: PriceTable = field(default_factory=PriceTable)
    max_errors_in_row: int | None = 50


@dataclass
class Tally:
    granted: int = 0
    billed: int = 0
    cost_usd: float = 0.0
    hits: int = 0
    settled: int = 0
    after_stop: int = 0
    errors_in_row: int = 0
    stopped: str | None = None
    last_error: str | None = None  # "code: message" of the error that ended an outage


class Coordinator:
    """The run's counters; every method runs one at a time (a Ray actor's calls are serial)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.tally = Tally()
        self._reserved_usd = 0.0
        self._reserved_images = 0

    def ask(self) -> float | None:
        """Permission to label one more image: the price reserved for it, or None (stopped)."""
        tally, limits = self.tally, self.limits
        if tally.stopped is not None:
            return None
        if limits.images is not None and tally.granted >= limits.images:
            tally.stopped = StopReason.MAX_IMAGES.value
            return None
        price = 0.0
        if limits.budget is not None:
            price = limits.prices.price_of_image(tally.billed + self._reserved_images)
            if tally.cost_usd + self._reserved_usd + price > limits.budget + 1e-9:
                tally.stopped = StopReason.BUDGET.value
                return None
            self._reserved_usd += price
            self._reserved_images += 1
        tally.granted += 1
        return price

    def settle(self, reserved: float, billed: bool, status: str, hit: bool | None, error: str | None) -> None:
        """What a granted image came to: its reservation is released and the real cost counted."""
        tally, limits = self.tally, self.limits
        if limits.budget is not None:
            self._reserved_usd = max(0.0, self._reserved_usd - reserved)
            self._reserved_images = max(0, self._reserved_images - 1)
        if billed:
            tally.cost_usd += limits.prices.price_of_image(tally.billed)
            tally.billed += 1
        tally.settled += 1
        if tally.stopped is not None:
            tally.after_stop += 1
        if hit:
            tally.hits += 1
            if limits.target is not None and tally.hits >= limits.target and tally.stopped is None:
                tally.stopped = StopReason.TARGET.value
        tally.errors_in_row = tally.errors_in_row + 1 if status == "error" else 0
        limit = limits.max_errors_in_row
        if limit is not None and tally.errors_in_row >= limit and tally.stopped is None:
            tally.stopped = StopReason.FAILED.value
            tally.last_error = error

    def add_prior_hits(self, hits: int) -> str | None:
        """Hits earlier runs recorded, as the listing reaches them; the stop reason, if any."""
        tally = self.tally
        tally.hits += hits
        target = self.limits.target
        if target is not None and tally.hits >= target and tally.stopped is None:
            tally.stopped = StopReason.TARGET.value
        return tally.stopped

    def stop(self, reason: str, error: str | None = None) -> None:
        if self.tally.stopped is None:
            self.tally.stopped = reason
            self.tally.last_error = error

    def state(self) -> Tally:
        return self.tally


class RateKeeper:
    """Start times for calls, `1/rate` seconds apart across every caller (no burst)."""

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError("rate must be a positive number of requests per second")
        self._interval = 1.0 / rate
        self._next = 0.0

    def reserve(self) -> float:
        """How many seconds the caller must wait before its call starts."""
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + self._interval
        return start - now


class Gate:
    """An actor's side of the coordinator (a Ray actor handle)."""

    def __init__(self, coordinator: Any) -> None:
        self._coordinator = coordinator

    def ask(self) -> float | None:
        import ray

        answer: float | None = ray.get(self._coordinator.ask.remote())
        return answer

    def settle(self, reserved: float, billed: bool, status: str, hit: bool | None, error: str | None) -> None:
        self._coordinator.settle.remote(reserved, billed, status, hit, error)  # ordered; not awaited

    def stop(self, reason: str, error: str | None = None) -> None:
        import ray

        ray.get(self._coordinator.stop.remote(reason, error))


class SharedRate:
    """A `labelsift.detectors.rekognition.Limiter` backed by the run's `RateKeeper` actor."""

    def __init__(self, keeper: Any) -> None:
        self._keeper = keeper

    def acquire(self) -> None:
        import ray

        wait = float(ray.get(self._keeper.reserve.remote()))
        if wait > 0:
            time.sleep(wait)
