import json
from pathlib import Path

import pytest

from labelsift.cost import PriceTable, PriceTier, estimate, load_prices


def test_defaults_are_the_seeds_figures() -> None:
    table = PriceTable()
    assert table.cost(1) == pytest.approx(0.001)
    assert table.cost(200_000) == pytest.approx(200.0)
    assert table.crowd_cost(1000) == pytest.approx((36.0, 60.0))


def test_tiers_apply_by_monthly_volume() -> None:
    table = PriceTable(images_already_this_month=999_990)
    assert table.cost(20) == pytest.approx(10 * 0.001 + 10 * 0.0008)
    assert table.price_of_image(9) == 0.001
    assert table.price_of_image(10) == 0.0008


def test_free_tier_comes_first() -> None:
    table = PriceTable(free_images_left=5000)
    assert table.cost(5000) == 0.0
    assert table.cost(6000) == pytest.approx(1.0)
    assert table.price_of_image(4999) == 0.0
    assert table.price_of_image(5000) == 0.001


def test_a_user_table_overrides_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"detector_tiers": [{"usd_per_image": 0.0015}], "crowd_usd_per_task": 0.02}))
    table = load_prices(path, free_images_left=10)
    assert table.detector_tiers == [PriceTier(usd_per_image=0.0015)]
    assert table.cost(110) == pytest.approx(0.15)
    assert table.crowd_cost(10)[0] == pytest.approx(0.6)


def test_a_bad_table_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"detector_tiers": [{"usd_per_image": -1}]}))
    with pytest.raises(ValueError, match="usd_per_image"):
        load_prices(path)


def test_estimate_for_a_free_detector_costs_nothing_but_time() -> None:
    result = estimate(10_000, 10**9, PriceTable(), rate_per_second=50, billable=False)
    assert (result.detector_usd, result.seconds) == (0.0, 200.0)
    paid = estimate(10_000, 10**9, PriceTable(), rate_per_second=50, billable=True)
    assert paid.detector_usd == pytest.approx(10.0)
