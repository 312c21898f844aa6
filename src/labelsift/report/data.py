"""What a report shows, as data: the pass's tally, the money, the labels seen most."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from labelsift.models import utc_now

from .collect import Tally


@dataclass
class Report:
    tally: Tally
    cost_usd: float
    top_labels: list[tuple[str, int, int, list[str]]]  # (label, images, boxes, parents)
    made_at: datetime = field(default_factory=utc_now)
    unmatched: dict[str, str | None] = field(default_factory=dict)  # asked label -> closest seen label
