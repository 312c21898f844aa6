"""Prices and estimates. Prices live in a table a user can override; logic never hard-codes them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from labelsift import uri
from labelsift.listing import ListingNotes
from labelsift.storage import Storage


class PriceTier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    up_to: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Images per month this tier covers up to (cumulative); null = no limit."
    )
    usd_per_image: Annotated[float, Field(ge=0)]


class PriceTable(BaseModel):
    """What a detector call costs. Defaults are the seed's figures for Rekognition DetectLabels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector_tiers: list[PriceTier] = [
        PriceTier(up_to=1_000_000, usd_per_image=0.001),
        PriceTier(usd_per_image=0.0008),
    ]
    free_images_left: Annotated[int, Field(ge=0, description="Free-tier images still left this month.")] = 0
    images_already_this_month: Annotated[int, Field(ge=0)] = 0
    crowd_usd_per_task: Annotated[float, Field(ge=0)] = 0.012
    crowd_workers_low: Annotated[int, Field(ge=1)] = 3
    crowd_workers_high: Annotated[int, Field(ge=1)] = 5

    def price_of_image(self, n: int) -> float:
        """What the n-th billable image of this run costs (n counts from 0)."""
        if n < self.free_images_left:
            return 0.0
        monthly = self.images_already_this_month + n
        for tier in self.detector_tiers:
            if tier.up_to is None or monthly < tier.up_to:
                return tier.usd_per_image
        return self.detector_tiers[-1].usd_per_image

    def cost(self, images: int) -> float:
        """Cost of `images` billable calls, the free tier first, then the monthly tiers."""
        start = self.images_already_this_month + min(images, self.free_images_left)
        end = self.images_already_this_month + images
        total = 0.0
        lower = 0
        for position, tier in enumerate(self.detector_tiers):
            last = position == len(self.detector_tiers) - 1
            upper = end if last or tier.up_to is None else tier.up_to
            total += max(0, min(end, upper) - max(start, lower)) * tier.usd_per_image
            lower = upper
        return total

    def crowd_cost(self, images: int) -> tuple[float, float]:
        return (
            images * self.crowd_usd_per_task * self.crowd_workers_low,
            images * self.crowd_usd_per_task * self.crowd_workers_high,
        )


def load_prices(path: str | Path | None, *, free_images_left: int | None = None) -> PriceTable:
    """The default table, or one read from a JSON file; `free_images_left` overrides the file."""
    table = PriceTable() if path is None else PriceTable.model_validate(json.loads(Path(path).read_text()))
    if free_images_left is not None:
        table = table.model_copy(update={"free_images_left": free_images_left})
    return table


class Estimate(BaseModel):
    model_config = ConfigDict(frozen=True)

    images: int
    bytes: int
    detector_usd: float
    seconds: float
    rate_per_second: float
    crowd_usd_low: float
    crowd_usd_high: float


def estimate(
    images: int, total_bytes: int, prices: PriceTable, *, rate_per_second: float, billable: bool
) -> Estimate:
    low, high = prices.crowd_cost(images)
    return Estimate(
        images=images,
        bytes=total_bytes,
        detector_usd=prices.cost(images) if billable else 0.0,
        seconds=images / rate_per_second if rate_per_second > 0 else math.inf,
        rate_per_second=rate_per_second,
        crowd_usd_low=low,
        crowd_usd_high=high,
    )


def estimate_source(
    storage: Storage,
    source: str,
    prices: PriceTable,
    *,
    rate_per_second: float,
    billable: bool,
    notes: ListingNotes | None = None,
) -> Estimate:
    """List `source` (nothing is read or sent) and estimate a full scan of it.

    A source labelsift would not scan (a presigned or http(s) URL) is a UsageError, as for `scan`.
    What the listing passes over (links, unreadable entries, other formats) is counted in `notes`.
    """
    uri.parse(source, what="source")
    images = 0
    total_bytes = 0
    for info in storage.list(source, notes=notes):
        images += 1
        total_bytes += info.size
    return estimate(images, total_bytes, prices, rate_per_second=rate_per_second, billable=billable)
