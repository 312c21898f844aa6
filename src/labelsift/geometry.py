"""Box geometry in one place: detector ratios -> pixels -> each format's convention.

Frame: a manifest record's `width`/`height` are the DISPLAYED frame (after the EXIF orientation
tag is applied) and the detector's box ratios are in that same frame, so every pixel value produced
here is in the displayed frame. A loader that reads the stored pixels without applying the EXIF tag
would see a rotated image for orientations 5-8; exporters say so in their docstrings.

Conventions (x grows right, y grows down, origin at the top-left corner of the top-left pixel):
- `PixelBox`: continuous float pixels (x, y, w, h), clipped to [0, width] x [0, height].
- COCO: [x, y, w, h] floats.
- YOLO: (x_centre, y_centre, w, h) normalised to 0-1 by the image size.
- VOC: 1-based inclusive integer corners (xmin, ymin, xmax, ymax) = (left+1, top+1, right, bottom).
- Ground Truth: integer left/top/width/height.
Integer edges are rounded half up (`floor(v + 0.5)`), never half-to-even, so a box of at least one
pixel never rounds to an empty one.

A box that is less than one pixel wide or high after clipping (including one wholly off the
frame) is dropped, and the caller counts the `DropReason`; nothing is dropped silently.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import NamedTuple

MIN_SIDE_PX = 1.0


class DropReason(StrEnum):
    DEGENERATE = "degenerate"  # < 1 px wide or high after clipping to the image
    OUTSIDE = "outside"  # no overlap with the image at all
    NO_IMAGE_SIZE = "no_image_size"  # the record has no width/height, so pixels are unknown
    BELOW_THRESHOLD = "below_threshold"  # the box's own confidence is under the selection threshold


class PixelBox(NamedTuple):
    """A box in float pixels of the displayed frame, already clipped to the image."""

    x: float
    y: float
    w: float
    h: float
    clipped: bool = False  # True when clipping changed the box (VOC writes it as `truncated`)

    @property
    def right(self) -> float:
        return self.x + self.w

    @property
    def bottom(self) -> float:
        return self.y + self.h


def to_pixels(
    left: float, top: float, width: float, height: float, image_width: int, image_height: int
) -> PixelBox | DropReason:
    """Ratios of the image -> a clipped pixel box, or why the box cannot be used."""
    x0 = left * image_width
    y0 = top * image_height
    x1 = x0 + width * image_width
    y1 = y0 + height * image_height
    cx0 = min(max(x0, 0.0), float(image_width))
    cy0 = min(max(y0, 0.0), float(image_height))
    cx1 = min(max(x1, 0.0), float(image_width))
    cy1 = min(max(y1, 0.0), float(image_height))
    w = cx1 - cx0
    h = cy1 - cy0
    if w <= 0.0 or h <= 0.0:
        return DropReason.OUTSIDE
    if w < MIN_SIDE_PX or h < MIN_SIDE_PX:
        return DropReason.DEGENERATE
    clipped = (cx0, cy0, cx1, cy1) != (x0, y0, x1, y1)
    return PixelBox(cx0, cy0, w, h, clipped)


def _round(value: float) -> int:
    return math.floor(value + 0.5)


def int_edges(box: PixelBox) -> tuple[int, int, int, int]:
    """Integer (left, top, right, bottom), rounded half up; right > left and bottom > top."""
    x, y, w, h, _ = box
    left, top = _round(x), _round(y)
    right, bottom = _round(x + w), _round(y + h)
    return left, top, right if right > left else left + 1, bottom if bottom > top else top + 1


def coco_bbox(box: PixelBox) -> tuple[float, float, float, float]:
    """COCO `bbox`: (x, y, w, h) in float pixels from the top-left."""
    return box.x, box.y, box.w, box.h


def yolo_box(box: PixelBox, image_width: int, image_height: int) -> tuple[float, float, float, float]:
    """YOLO: (x_centre, y_centre, w, h) normalised by the image size, each within 0-1."""
    return (
        (box.x + box.w / 2.0) / image_width,
        (box.y + box.h / 2.0) / image_height,
        box.w / image_width,
        box.h / image_height,
    )


def voc_box(box: PixelBox) -> tuple[int, int, int, int]:
    """Pascal VOC: 1-based inclusive integer corners (xmin, ymin, xmax, ymax)."""
    left, top, right, bottom = int_edges(box)
    return left + 1, top + 1, right, bottom


def gt_box(box: PixelBox) -> tuple[int, int, int, int]:
    """Ground Truth: integer (left, top, width, height), top-left origin."""
    left, top, right, bottom = int_edges(box)
    return left, top, right - left, bottom - top
