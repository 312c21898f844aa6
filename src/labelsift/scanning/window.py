"""The in-order window of a scan: requests run in a pool and finish in any order; their outcomes
leave the window in source order, so the stopping rules see the same sequence every time."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Generic, TypeVar

from labelsift.scanning.options import Outcome
from labelsift.storage import ObjectInfo

T = TypeVar("T")


class InOrderWindow(Generic[T]):
    """Positions handed out in source order, the requests in flight, and the outcomes waiting for
    the ones before them.

    `next_in` is the next source position to hand out, `next_out` the next one whose outcome the
    rules are waiting for; `has_room(ahead)` bounds how far the first may run past the second."""

    def __init__(self) -> None:
        self.pending: dict[Future[T], tuple[int, ObjectInfo]] = {}
        self.ready: dict[int, Outcome] = {}
        self.next_in = 0
        self.next_out = 0

    def has_room(self, ahead: int) -> bool:
        return self.next_in < self.next_out + ahead

    def take_position(self) -> int:
        at, self.next_in = self.next_in, self.next_in + 1
        return at

    def send(self, future: Future[T], at: int, info: ObjectInfo) -> None:
        self.pending[future] = (at, info)

    def settle(self, at: int, outcome: Outcome) -> None:
        """`outcome` is the outcome of position `at`; it waits until every earlier one is out."""
        self.ready[at] = outcome

    def next_in_order(self) -> Outcome | None:
        """The next outcome in source order, or None while it is not in yet."""
        outcome = self.ready.pop(self.next_out, None)
        if outcome is not None:
            self.next_out += 1
        return outcome

    def cancel_all(self) -> None:
        """Cancel every request that has not started (they stay pending until `drop_cancelled`):
        a worker that frees up must not start another."""
        for future in self.pending:
            future.cancel()

    def drop_cancelled(self) -> list[int]:
        """Cancel what has not started and forget it; the positions it held."""
        cancelled = [future for future in self.pending if future.cancel()]
        return [self.pending.pop(future)[0] for future in cancelled]

    def wait(self, timeout: float) -> list[tuple[Future[T], int, ObjectInfo]]:
        """The requests that finished within `timeout` seconds (at least one, unless it ran out),
        no longer pending."""
        done, _ = wait(list(self.pending), timeout=timeout, return_when=FIRST_COMPLETED)
        return [(future, *self.pending.pop(future)) for future in done]
