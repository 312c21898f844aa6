"""A scan's money: the price held for each request in flight, and what answers cost.

A request is sent only if what is spent, plus what requests in flight may still cost, plus its own
price stays within the budget, so a run never goes over it however its requests finish. Prices
follow the price table's tiers in the order requests are counted (`PriceTable.price_of_image`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from labelsift.cost import PriceTable
from labelsift.scanning.options import ScanProgress

_ROUNDING = 1e-9  # prices are sums of floats: a budget of exactly N images must allow N


@dataclass
class Budget:
    """Spent money lives in `progress` (`cost_usd`, `billed`) for displays to show; held money in
    the budget, keyed by the request's source position. `limit` None: no budget to keep (none was
    given, or the detector bills nothing), every request may go."""

    progress: ScanProgress
    prices: PriceTable
    limit: float | None = None
    _held: dict[int, float] = field(default_factory=dict)

    @property
    def reserved(self) -> float:
        return sum(self._held.values())

    def hold(self, request: int) -> bool:
        """Hold the price of one more request; False (nothing held) when it would not fit."""
        price = 0.0
        if self.limit is not None:
            price = self.prices.price_of_image(self.progress.billed + len(self._held))
            if self.progress.cost_usd + self.reserved + price > self.limit + _ROUNDING:
                return False
        self._held[request] = price
        return True

    def release(self, request: int) -> None:
        """A request that was not sent after all (cancelled) or failed with nothing to pay."""
        self._held.pop(request, None)

    def settle(self, request: int, billed: bool) -> None:
        """A request answered: its hold ends, and a billed answer is paid at the next tier price."""
        self._held.pop(request, None)
        if billed:
            self.progress.cost_usd += self.prices.price_of_image(self.progress.billed)
            self.progress.billed += 1
