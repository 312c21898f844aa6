"""Prices and estimates. Prices live in a table a user can override; logic never hard-codes them."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from labelsift import uri
from labelsift.dedupe import Duplicates
from labelsift.errors import UsageError
from labelsift.imagelimits import MAX_OBJECT_BYTES
from labelsift.listing import ListingNotes
from labelsift.storage import ObjectInfo, Storage


class PriceTier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    up_to: Annotated[int, Field(gt=0)] | None = Field(
        default=None, description="Images per month this tier covers up to (cumulative); null = no limit."
    )
    usd_per_image: Annotated[float, Field(ge=0)]


class PriceTable(BaseModel):
    """What a detector call costs. Defaults are Rekognition DetectLabels' published prices."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    detector_tiers: list[PriceTier] = [
        PriceTier(up_to=1_000_000, usd_per_image=0.001),
        PriceTier(usd_per_image=0.0008),
    ]
    image_properties_tiers: list[PriceTier] = Field(
        default=[PriceTier(up_to=1_000_000, usd_per_image=0.00075), PriceTier(usd_per_image=0.0006)],
        description="DetectLabels' IMAGE_PROPERTIES feature, billed per image on top of the labels.",
    )
    include_image_properties: bool = Field(
        default=False, description="Price each image with IMAGE_PROPERTIES too (scan --image-properties)."
    )
    free_images_left: Annotated[int, Field(ge=0, description="Free-tier images still left this month.")] = 0
    images_already_this_month: Annotated[int, Field(ge=0)] = 0
    crowd_usd_per_task: Annotated[float, Field(ge=0)] = 0.012
    crowd_workers_low: Annotated[int, Field(ge=1)] = 3
    crowd_workers_high: Annotated[int, Field(ge=1)] = 5

    @field_validator("detector_tiers", "image_properties_tiers")
    @classmethod
    def _tiers_climb(cls, tiers: list[PriceTier]) -> list[PriceTier]:
        """At least one tier; limits rise; only the last may have none (a tier after it is unreachable)."""
        if not tiers:
            raise ValueError('give at least one tier, e.g. [{"usd_per_image": 0.001}]')
        limits = [tier.up_to for tier in tiers]
        if None in limits[:-1]:
            raise ValueError("only the last tier may have no up_to: a tier after it is never reached")
        bounded = [limit for limit in limits if limit is not None]
        if any(b <= a for a, b in pairwise(bounded)):
            raise ValueError(f"up_to must rise from tier to tier, got {bounded}")
        return tiers

    @model_validator(mode="after")
    def _crowd_range(self) -> PriceTable:
        if self.crowd_workers_low > self.crowd_workers_high:
            raise ValueError(
                f"crowd_workers_low {self.crowd_workers_low} is above crowd_workers_high "
                f"{self.crowd_workers_high}"
            )
        return self

    def _tier_lists(self) -> list[list[PriceTier]]:
        if self.include_image_properties:
            return [self.detector_tiers, self.image_properties_tiers]
        return [self.detector_tiers]

    def price_of_image(self, n: int) -> float:
        """What the n-th billable image of this run costs (n counts from 0), every feature asked for."""
        if n < self.free_images_left:
            return 0.0
        monthly = self.images_already_this_month + n
        return sum(_tier_price(tiers, monthly) for tiers in self._tier_lists())

    def cost(self, images: int) -> float:
        """Cost of `images` billable calls, the free tier first, then the monthly tiers."""
        start = self.images_already_this_month + min(images, self.free_images_left)
        end = self.images_already_this_month + images
        return sum(_tiered_cost(tiers, start, end) for tiers in self._tier_lists())

    def crowd_cost(self, images: int) -> tuple[float, float]:
        return (
            images * self.crowd_usd_per_task * self.crowd_workers_low,
            images * self.crowd_usd_per_task * self.crowd_workers_high,
        )


def _tier_price(tiers: list[PriceTier], monthly: int) -> float:
    for tier in tiers:
        if tier.up_to is None or monthly < tier.up_to:
            return tier.usd_per_image
    return tiers[-1].usd_per_image


def _tiered_cost(tiers: list[PriceTier], start: int, end: int) -> float:
    """Images numbered [start, end) of the month, each priced by the tier it falls in."""
    total = 0.0
    lower = 0
    for position, tier in enumerate(tiers):
        last = position == len(tiers) - 1
        upper = end if last or tier.up_to is None else tier.up_to
        total += max(0, min(end, upper) - max(start, lower)) * tier.usd_per_image
        lower = upper
    return total


def load_prices(
    path: str | Path | None, *, free_images_left: int | None = None, image_properties: bool = False
) -> PriceTable:
    """The default table, or one read from a JSON file; `free_images_left` overrides the file.

    A file that cannot be read as a price table is a `UsageError` naming the file and what is wrong
    with it (the line of a JSON error, the field of a wrong value)."""
    table = PriceTable() if path is None else _read_prices(_prices_path(str(path)))
    if free_images_left is not None:
        if free_images_left < 0:
            raise UsageError(f"--free-images {free_images_left}: give the free images left, 0 or more.")
        table = table.model_copy(update={"free_images_left": free_images_left})
    if image_properties:
        table = table.model_copy(update={"include_image_properties": True})
    return table


MAX_PRICES_BYTES = 1 << 20
EMPTY_OR_HUGE = "empty or over 1 GiB, which a scan skips without a call (not counted)"


def _prices_path(text: str) -> Path:
    """The local file `--prices` names (parsed by `uri.parse`: a presigned URL is refused without
    showing its query); an S3 location, or anything that is not a regular file, is a UsageError."""
    location = uri.parse(text, what="price table (--prices)")
    if isinstance(location, uri.S3Location):
        raise UsageError(f"--prices {location}: a price table is a local JSON file; download it first.")
    path = location.path
    if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO would block, /dev/zero never end
        raise UsageError(f"--prices {path}: not a regular file, so not a price table; give a JSON file.")
    return path


def _read_prices(path: Path) -> PriceTable:
    fields = ", ".join(PriceTable.model_fields)
    fix = f"a price table is a JSON object with any of {fields}; leave --prices out for the defaults"
    try:
        with path.open("rb") as stream:  # a price table is a few hundred bytes: never read more than a cap
            raw = stream.read(MAX_PRICES_BYTES + 1)
        if len(raw) > MAX_PRICES_BYTES:
            raise UsageError(f"--prices {path}: over {MAX_PRICES_BYTES} bytes, not a price table; {fix}.")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise UsageError(f"--prices {path}: no such file; {fix}.") from None
    except IsADirectoryError:
        raise UsageError(f"--prices {path}: is a folder, not a JSON file; {fix}.") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"--prices {path}: not UTF-8 text (byte {exc.start}); save it as UTF-8.") from None
    except OSError as exc:
        raise UsageError(f"--prices {path}: cannot be read ({exc.strerror}).") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"--prices {path}: not JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); {fix}."
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"--prices {path}: give a JSON object of prices, not {type(data).__name__}; {fix}.")
    try:
        return PriceTable.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        where = f"{field}: " if field else ""
        raise UsageError(f"--prices {path}: {where}{problem['msg']}; {fix}.") from None


def check_rate(rate_per_second: float) -> None:
    """A rate an estimate can divide by: above 0 and finite (a UsageError otherwise)."""
    if not 0 < rate_per_second < math.inf:  # NaN fails this too
        raise UsageError(f"--rate {rate_per_second:g}: give the requests per second you expect, above 0.")


class Estimate(BaseModel):
    model_config = ConfigDict(frozen=True)

    images: int
    bytes: int
    detector_usd: float
    seconds: float
    rate_per_second: float
    crowd_usd_low: float
    crowd_usd_high: float
    duplicates: int = 0  # of `images`: the same bytes as another one, labelled once (not billed)
    saved_usd: float = 0.0  # what labelling the duplicates too would have cost


def estimate(
    images: int,
    total_bytes: int,
    prices: PriceTable,
    *,
    rate_per_second: float,
    billable: bool,
    duplicates: int = 0,
) -> Estimate:
    check_rate(rate_per_second)
    low, high = prices.crowd_cost(images)  # people without labelsift label every copy
    unique = images - duplicates
    return Estimate(
        images=images,
        bytes=total_bytes,
        detector_usd=prices.cost(unique) if billable else 0.0,
        duplicates=duplicates,
        saved_usd=prices.cost(images) - prices.cost(unique) if billable else 0.0,
        seconds=unique / rate_per_second,
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
    objects: Iterable[ObjectInfo] | None = None,
) -> Estimate:
    """List `source` (nothing is read or sent) and estimate a full scan of it; `objects`, when
    given (e.g. `inventory.list_source`), stands in for the listing. Identical objects are counted
    once for the cost and time (`labelsift.dedupe`: S3 by ETag and size, from the listing alone;
    local files by a hash of those whose size collides, which reads them).

    A source labelsift would not scan (a presigned or http(s) URL) is a UsageError, as for `scan`.
    What the listing passes over (links, unreadable entries, other formats) is counted in `notes`.
    """
    uri.parse(source, what="source")
    images = duplicates = 0
    total_bytes = 0
    with Duplicates() as seen:
        for info in storage.list(source, notes=notes) if objects is None else objects:
            if info.size == 0 or info.size > MAX_OBJECT_BYTES:  # a scan skips these unpaid
                if notes is not None:
                    notes.add(info.uri, EMPTY_OR_HUGE)
                continue
            images += 1
            total_bytes += info.size
            duplicates += seen.claim(info) is not None
    return estimate(
        images, total_bytes, prices, rate_per_second=rate_per_second, billable=billable, duplicates=duplicates
    )
