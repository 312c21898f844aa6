from __future__ import annotations

import pytest

from labelsift.geometry import DropReason, PixelBox, coco_bbox, gt_box, to_pixels, voc_box, yolo_box


def test_ratio_to_pixels_and_each_convention() -> None:
    b = to_pixels(0.1, 0.2, 0.3, 0.4, 200, 100)
    assert b == PixelBox(20.0, 20.0, 60.0, 40.0, clipped=False)
    assert coco_bbox(b) == (20.0, 20.0, 60.0, 40.0)
    assert yolo_box(b, 200, 100) == pytest.approx((0.25, 0.4, 0.3, 0.4))
    assert voc_box(b) == (21, 21, 80, 60)
    assert gt_box(b) == (20, 20, 60, 40)


def test_boxes_are_clipped_to_the_image() -> None:
    b = to_pixels(-0.05, 0.9, 0.2, 0.3, 200, 100)
    assert isinstance(b, PixelBox) and b.clipped
    assert (b.x, b.y, b.w, b.h) == pytest.approx((0.0, 90.0, 30.0, 10.0))
    assert gt_box(b) == (0, 90, 30, 10) and voc_box(b) == (1, 91, 30, 100)
    whole = to_pixels(0.0, 0.0, 1.2, 1.0, 640, 480)
    assert isinstance(whole, PixelBox)
    assert voc_box(whole) == (1, 1, 640, 480) and gt_box(whole) == (0, 0, 640, 480)
    assert yolo_box(whole, 640, 480) == pytest.approx((0.5, 0.5, 1.0, 1.0))


def test_degenerate_and_outside_boxes_are_reported() -> None:
    assert to_pixels(0.5, 0.5, 0.004, 0.5, 200, 100) is DropReason.DEGENERATE  # 0.8 px wide
    assert to_pixels(0.999, 0.0, 0.5, 1.0, 200, 100) is DropReason.DEGENERATE  # 0.2 px left after clipping
    assert to_pixels(1.1, 0.0, 0.2, 0.5, 200, 100) is DropReason.OUTSIDE
    assert to_pixels(-0.3, 0.0, 0.2, 0.5, 200, 100) is DropReason.OUTSIDE


def test_integer_edges_round_half_up_and_never_vanish() -> None:
    # banker's rounding would give left 2, right 2 (empty) for x 1.5..2.5
    b = PixelBox(1.5, 0.5, 1.0, 1.0)
    assert gt_box(b) == (2, 1, 1, 1) and voc_box(b) == (3, 2, 3, 2)
    for x in (0.49, 0.5, 0.51, 7.5, 8.5):
        left, _, width, _ = gt_box(PixelBox(x, 0.0, 1.0, 1.0))
        assert width >= 1 and left == int(x + 0.5)
