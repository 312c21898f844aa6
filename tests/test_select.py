from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from manifest_builders import box, failed, label, record

from labelsift.models import Verdict
from labelsift.select import Outcome, Selection
from labelsift.views import instance_view, label_views, view_of

T0 = datetime(2026, 11, 29, tzinfo=UTC)


def test_matching_is_case_insensitive_by_name_alias_and_parent() -> None:
    bird = label("Bird", 91, parents=("Animal",), aliases=("Fowl",))
    for query in ("bird", "BIRD", "fowl", "animal"):
        hits = Selection((query,)).hits(label_views([bird]))
        assert [(h.query, h.label["name"], h.confidence) for h in hits] == [(query, "Bird", 91)]
    assert Selection(("animal",), include_parents=False).hits(label_views([bird])) == []
    assert Selection(("Cat",)).hits(label_views([bird])) == []


def test_best_match_wins_and_thresholds_apply_per_label() -> None:
    labels = [
        label("Bird", 60, parents=("Animal",)),
        label("Dog", 80, parents=("Animal",)),
        label("Animal", 80),
    ]
    selection = Selection(("Animal", "Bird", "Dog"), threshold=70, thresholds={"bird": 55})
    hits = selection.hits(label_views(labels))
    assert [(h.query, h.label["name"], h.confidence) for h in hits] == [
        ("Animal", "Animal", 80),  # the label named like the query wins a tie
        ("Bird", "Bird", 60),  # its own threshold (55), not the default (70)
        ("Dog", "Dog", 80),
    ]
    assert selection.threshold_for("BIRD") == 55 and selection.threshold_for("dog") == 70
    assert [h.query for h in Selection(("Bird",), threshold=60.5).hits(label_views(labels))] == []


def test_decide_selects_boxes_at_threshold_and_dedups_parent_boxes() -> None:
    shared = box(0.1, 0.1, 0.2, 0.2, 90)
    rec = record(
        "s3://b/1.jpg",
        label("Bird", 90, shared, box(0.5, 0.5, 0.2, 0.2, 40), parents=("Animal",)),
        label("Animal", 90, shared),
    )
    decision = Selection(("Animal",), threshold=50).decide(view_of(rec))
    (d,) = decision.labels
    assert (
        d.outcome is Outcome.SELECTED
        and d.instances == (instance_view(shared),)
        and d.below_threshold_boxes == 1
    )
    assert not d.human and decision.any_selected


def test_band_holds_images_out_for_review_even_above_threshold() -> None:
    selection = Selection(("Bird",), threshold=50, band=(40, 70))
    outcomes = [
        selection.decide(view_of(record(f"s3://b/{c}.jpg", label("Bird", c)))).labels[0].outcome
        for c in (39, 40, 60, 70, 71)
    ]
    assert outcomes == [
        Outcome.NOT_SELECTED,
        Outcome.REVIEW,
        Outcome.REVIEW,
        Outcome.REVIEW,
        Outcome.SELECTED,
    ]
    # no matching label at all: nothing for people to look at
    assert (
        Selection(("Bird",), band=(0, 70)).decide(view_of(record("s3://b/x.jpg"))).labels[0].outcome
        is Outcome.NOT_SELECTED
    )


def test_people_override_the_model() -> None:
    selection = Selection(("Bird",), threshold=50, band=(40, 60))
    reject = Verdict(label="bird", accepted=False, at=T0)
    accept = Verdict(label="BIRD", accepted=True, at=T0 + timedelta(hours=1))
    drawn = Verdict(label="Bird", accepted=True, instances=[box(0, 0, 0.5, 0.5, 100)])

    high_rejected = selection.decide(
        view_of(record("s3://b/1.jpg", label("Bird", 99, box(0, 0, 1, 1)), review=(reject,)))
    )
    assert high_rejected.labels[0].outcome is Outcome.NOT_SELECTED and high_rejected.labels[0].human

    low_accepted = selection.decide(
        view_of(record("s3://b/2.jpg", label("Bird", 10, box(0, 0, 1, 1, 10)), review=(accept,)))
    )
    d = low_accepted.labels[0]
    assert d.outcome is Outcome.SELECTED and d.human and d.instances == (instance_view(box(0, 0, 1, 1, 10)),)

    in_band_accepted = selection.decide(view_of(record("s3://b/3.jpg", label("Bird", 50), review=(accept,))))
    assert in_band_accepted.labels[0].outcome is Outcome.SELECTED

    newest_wins = selection.decide(
        view_of(record("s3://b/4.jpg", label("Bird", 99), review=(accept, reject)))
    )
    assert newest_wins.labels[0].outcome is Outcome.NOT_SELECTED

    redrawn = selection.decide(
        view_of(record("s3://b/5.jpg", label("Bird", 99, box(0.5, 0.5, 0.5, 0.5)), review=(drawn,)))
    )
    assert redrawn.labels[0].instances == (instance_view(box(0, 0, 0.5, 0.5, 100)),)

    unknown_label = selection.decide(view_of(record("s3://b/6.jpg", label("Cat", 99))))
    assert unknown_label.labels[0].outcome is Outcome.NOT_SELECTED and not unknown_label.labels[0].human

    other_label_verdict = Verdict(label="Dog", accepted=False)
    assert selection.decide(
        view_of(record("s3://b/7.jpg", label("Bird", 99), review=(other_label_verdict,)))
    ).any_selected


def test_records_not_labeled_are_never_selected() -> None:
    decision = Selection(("Bird",), threshold=0).decide(view_of(failed("s3://b/x.jpg")))
    assert [d.outcome for d in decision.labels] == [Outcome.NOT_SELECTED]


def test_several_queries_decide_independently() -> None:
    rec = record("s3://b/1.jpg", label("Bird", 95), label("Dog", 45))
    decision = Selection(("Dog", "Bird"), band=(40, 50)).decide(view_of(rec))
    assert [(d.query, d.outcome) for d in decision.labels] == [
        ("Dog", Outcome.REVIEW),
        ("Bird", Outcome.SELECTED),
    ]
    assert [d.query for d in decision.selected] == ["Bird"] and [d.query for d in decision.held_out] == [
        "Dog"
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"labels": ()},
        {"labels": ("a", "A")},
        {"labels": ("a",), "threshold": 101},
        {"labels": ("a",), "thresholds": {"b": 50}},
        {"labels": ("a",), "band": (60, 40)},
        {"labels": "bird"},
    ],
)
def test_invalid_selections_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Selection(**kwargs)  # type: ignore[arg-type]
