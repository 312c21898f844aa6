"""Selection: which images (and boxes) count as a label, decided from the manifest, never a rescan.

A query label matches a detected label case-insensitively by its name, any of its aliases and, if
`include_parents`, any of its parents (so `Animal` matches a Bird whose parents include Animal).

Per query label an image is, in this order of precedence:
1. not selected, whatever else, when its record's status is not `labeled`, or when the selection
   sets `min_sharpness`/`min_brightness` and the record's image quality (Rekognition's
   IMAGE_PROPERTIES, scanned with `--image-properties`) is below them or missing;
2. decided by a person when a verdict names the query label (newest verdict wins): a reject is
   never selected, an accept is selected (below threshold too) with the person's boxes when the
   verdict carries `instances`, else the boxes of every matching label; the decision is `human`;
3. held out for review when a label matched and its best confidence lies in `band` (inclusive),
   even above the threshold: people decide those;
4. selected when the best matching confidence reaches the query's threshold (`thresholds[label]`
   or `threshold`), with the matching labels' boxes whose own confidence reaches it too
   (identical boxes reported by several matching labels, e.g. Bird and Animal, are kept once);
5. otherwise not selected.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from labelsift.errors import UsageError
from labelsift.manifest import iter_records_mentioning
from labelsift.manifest.inputs import one_manifest
from labelsift.models import ScanStatus, Verdict
from labelsift.views import InstanceView, LabelView, RecordView, instance_view

_MAX_KNOWN_NAMES = 100_000  # detector taxonomies have a few thousand names


class Outcome(StrEnum):
    SELECTED = "selected"
    REVIEW = "review"  # held out: inside the review band, for people to decide
    NOT_SELECTED = "not_selected"


@dataclass(frozen=True, slots=True)
class Hit:
    """A query label reached its threshold: the best matching detected label and its confidence."""

    query: str
    label: LabelView
    confidence: float


# enum members as plain names: `Outcome.SELECTED` is a slow class-attribute look-up on the hot path
SELECTED, REVIEW, NOT_SELECTED = Outcome.SELECTED, Outcome.REVIEW, Outcome.NOT_SELECTED
_LABELED = ScanStatus.LABELED


class LabelDecision(NamedTuple):
    query: str
    outcome: Outcome
    confidence: float  # best matching model confidence, 0-100 (0 when nothing matched)
    instances: tuple[InstanceView, ...] = ()  # boxes to export when selected
    human: bool = False  # a person's verdict decided
    below_threshold_boxes: int = 0  # matching boxes left out for their own low confidence

    @property
    def selected(self) -> bool:
        return self.outcome is SELECTED


class Decision(NamedTuple):
    record: RecordView
    labels: tuple[LabelDecision, ...]  # one per query label, in query order

    @property
    def selected(self) -> list[LabelDecision]:
        return [d for d in self.labels if d.outcome is SELECTED]

    @property
    def held_out(self) -> list[LabelDecision]:
        return [d for d in self.labels if d.outcome is REVIEW]

    @property
    def any_selected(self) -> bool:
        return any(d.outcome is SELECTED for d in self.labels)


def label_key(name: str) -> str:
    """What two label names are compared by (a query, a verdict's label): case-insensitive,
    surrounding spaces stripped."""
    return name.strip().lower()


def latest_verdict(review: Sequence[Verdict], label: str) -> Verdict | None:
    """A person's newest verdict on `label` (names compared by `label_key`)."""
    key = label_key(label)
    for verdict in reversed(review):
        if label_key(verdict.label) == key:
            return verdict
    return None


def accepted(review: Sequence[Verdict], label: str) -> bool | None:
    """Whether people accepted `label` (their newest verdict); None when nobody decided."""
    verdict = latest_verdict(review, label)
    return None if verdict is None else verdict.accepted


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_confidence(name: str, value: float) -> None:
    if not 0.0 <= value <= 100.0:  # NaN fails this too
        raise UsageError(f"{name} {value}: give a confidence in percent, from 0 to 100.")


@dataclass(frozen=True)
class Selection:
    labels: tuple[str, ...]
    threshold: float = 50.0
    thresholds: Mapping[str, float] = field(default_factory=dict, hash=False)
    include_parents: bool = True
    band: tuple[float, float] | None = None
    min_sharpness: float | None = None
    min_brightness: float | None = None
    # query (lower case) -> index in `labels`; built once, so matching a record is dictionary look-ups
    _index: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)
    _limits: tuple[float, ...] = field(init=False, repr=False, compare=False, hash=False)
    _nothing: tuple[LabelDecision, ...] = field(init=False, repr=False, compare=False, hash=False)
    # a detected name as written -> query index (-1: none), learnt as names are met (lower() is slow)
    _known: dict[str, int] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if isinstance(self.labels, str):
            raise TypeError("labels: give a tuple of label names, not one string")
        if not self.labels:
            raise UsageError("labels: give at least one label (--label NAME).")
        index: dict[str, int] = {}
        for i, name in enumerate(self.labels):
            key = label_key(name)
            if not key:
                raise UsageError(
                    f"--label {name!r}: a label name is empty; give a name such as --label Bird."
                )
            if not _utf8(name):
                raise UsageError(
                    f"--label {name!r}: not UTF-8 text (the shell passed bytes in another encoding); "
                    "type the label name in UTF-8."
                )
            if key in index:
                first = self.labels[index[key]]
                raise UsageError(
                    f"--label {name!r} is given twice ({first!r} and {name!r}; labels match "
                    "case-insensitively): give each label once, in the class order you want."
                )
            index[key] = i
        _check_confidence("threshold", self.threshold)
        per_label: dict[int, float] = {}
        for name, value in self.thresholds.items():
            if label_key(name) not in index:
                raise UsageError(f"thresholds: {name!r} is not one of the labels {list(self.labels)}.")
            _check_confidence(f"thresholds[{name!r}]", value)
            per_label[index[label_key(name)]] = value
        if self.band is not None:
            low, high = self.band
            _check_confidence("band low", low)
            _check_confidence("band high", high)
            if low > high:
                raise UsageError(f"band {low:g}:{high:g}: LOW is above HIGH; give LOW:HIGH, e.g. 50:80.")
        for option, minimum in (
            ("--min-sharpness", self.min_sharpness),
            ("--min-brightness", self.min_brightness),
        ):
            if minimum is not None:
                _check_confidence(option, minimum)
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_known", {})
        object.__setattr__(self, "_nothing", tuple(LabelDecision(q, NOT_SELECTED, 0.0) for q in self.labels))
        object.__setattr__(
            self, "_limits", tuple(per_label.get(i, self.threshold) for i in range(len(self.labels)))
        )

    def threshold_for(self, query: str) -> float:
        return self._limits[self._index[label_key(query)]]

    def _matches(self, labels: Sequence[LabelView]) -> list[list[LabelView]]:
        """For each query, the detected labels that match it (name, alias or parent), each once."""
        found: list[list[LabelView]] = [[] for _ in self.labels]
        known = self._known
        parents = self.include_parents
        for label in labels:
            name = label["name"]
            i = known.get(name)
            if i is None:
                i = self._learn(name)
            if i >= 0:
                found[i].append(label)
            for names in (label["aliases"], label["parents"]) if parents else (label["aliases"],):
                for name in names:
                    j = known.get(name)
                    if j is None:
                        j = self._learn(name)
                    # identity, not equality: a label is appended once per query however it matched
                    if j >= 0 and not (found[j] and found[j][-1] is label):
                        found[j].append(label)
        return found

    def _learn(self, name: str) -> int:
        i = self._index.get(name.lower(), -1)
        if len(self._known) < _MAX_KNOWN_NAMES:
            self._known[name] = i
        return i

    @staticmethod
    def _best(query: str, matched: list[LabelView]) -> LabelView | None:
        """Highest confidence; on a tie the label named like the query wins."""
        best: LabelView | None = None
        for label in matched:
            if (
                best is None
                or label["confidence"] > best["confidence"]
                or (label["confidence"] == best["confidence"] and label["name"].lower() == query.lower())
            ):
                best = label
        return best

    def hits(self, labels: Sequence[LabelView]) -> list[Hit]:
        """Query labels whose best match reaches their threshold, in query order (model only).
        Labels held as models: `views.label_views(labels)`."""
        out: list[Hit] = []
        for i, matched in enumerate(self._matches(labels)):
            if not matched:
                continue
            best = self._best(self.labels[i], matched)
            if best is not None and best["confidence"] >= self._limits[i]:
                out.append(Hit(self.labels[i], best, best["confidence"]))
        return out

    def good_enough(self, record: RecordView) -> bool:
        """Whether the record's image quality meets the selection's minimums (always, when none set)."""
        if self.min_sharpness is None and self.min_brightness is None:
            return True
        properties = record.get("image_properties")
        quality = properties["quality"] if properties else None
        sharpness = quality.get("sharpness") if quality else None
        brightness = quality.get("brightness") if quality else None
        for wanted, value in ((self.min_sharpness, sharpness), (self.min_brightness, brightness)):
            if wanted is not None and (value is None or value < wanted):
                return False
        return True

    def decide(self, record: RecordView) -> Decision:
        """Per query label, what to do with the record (a model's: `views.view_of(record)`)."""
        if record["status"] is not _LABELED or not self.good_enough(record):
            return Decision(record, self._nothing)
        matches = self._matches(record["labels"])
        review = record["review"]
        out: list[LabelDecision] = []
        for i, query in enumerate(self.labels):
            matched = matches[i]
            if not matched and not review:
                out.append(self._nothing[i])
                continue
            best = matched[0] if len(matched) == 1 else self._best(query, matched)
            confidence = best["confidence"] if best is not None else 0.0
            limit = self._limits[i]
            verdict = latest_verdict(record["review"], query) if review else None
            if verdict is not None:
                if not verdict.accepted:
                    out.append(LabelDecision(query, NOT_SELECTED, confidence, human=True))
                    continue
                boxes = (
                    tuple(instance_view(box) for box in verdict.instances)
                    if verdict.instances is not None
                    else _unique_boxes(matched, 0.0)[0]
                )
                out.append(LabelDecision(query, SELECTED, confidence, boxes, human=True))
                continue
            if best is not None and self.band is not None and self.band[0] <= confidence <= self.band[1]:
                out.append(LabelDecision(query, REVIEW, confidence))
                continue
            if best is not None and confidence >= limit:
                boxes, low = _unique_boxes(matched, limit)
                out.append(LabelDecision(query, SELECTED, confidence, boxes, below_threshold_boxes=low))
                continue
            out.append(LabelDecision(query, NOT_SELECTED, confidence))
        return Decision(record, tuple(out))


def _unique_boxes(matched: list[LabelView], limit: float) -> tuple[tuple[InstanceView, ...], int]:
    """Boxes of the matching labels at or above `limit`, each distinct box once; and how many fell short."""
    seen: set[tuple[float, float, float, float]] = set()
    boxes: list[InstanceView] = []
    low = 0
    for label in matched:
        for instance in label["instances"]:
            key = (instance["left"], instance["top"], instance["width"], instance["height"])
            if key in seen:
                continue
            seen.add(key)
            if instance["confidence"] < limit:
                low += 1
                continue
            boxes.append(instance)
    return tuple(boxes), low


def closest_label(asked: Sequence[str], seen: Iterable[str]) -> str | None:
    """The seen label closest in spelling to one asked for and not seen (`bird` for a typed `birb`)."""
    names = {name.lower(): name for name in seen}
    for wanted in asked:
        if wanted.lower() in names:
            continue
        match = difflib.get_close_matches(wanted.lower(), list(names), n=1, cutoff=0.6)
        if match:
            return names[match[0]]
    return None


@dataclass(frozen=True)
class Unmatched:
    """A query label that no labeled record matches (by name, alias or, if asked, parent), nor any
    person's verdict: a typo, or a label this detector does not know."""

    query: str
    suggestion: str | None  # the closest label the records do have
    seen: tuple[tuple[str, int], ...]  # the labels seen most often, with how many records
    include_parents: bool = True

    def message(self, manifest: str) -> str:
        how = "name, alias or parent" if self.include_parents else "name or alias"
        text = f"no record in {manifest} has a label matching {self.query!r} (by {how})."
        if self.suggestion:
            text += f" Did you mean {self.suggestion!r}?"
        seen = ", ".join(f"{name} ({count})" for name, count in self.seen) or "none"
        return f"{text} Labels seen most often: {seen}."


def unmatched_labels(
    selection: Selection, records: Iterable[RecordView | None], *, top: int = 8
) -> list[Unmatched]:
    """The query labels of `selection` that none of `records` matches, in query order, each with the
    closest label the records have. Streams: keeps only a count per label name."""
    seen: Counter[str] = Counter()
    matched = [False] * len(selection.labels)
    queries = [label_key(query) for query in selection.labels]
    for record in records:
        if record is None:
            continue
        for verdict in record["review"]:
            key = label_key(verdict.label)
            if key in queries:
                matched[queries.index(key)] = True
        if record["status"] is not _LABELED:
            continue
        labels = record["labels"]
        seen.update({label["name"] for label in labels})
        for i, found in enumerate(selection._matches(labels)):
            matched[i] = matched[i] or bool(found)
    common = tuple(seen.most_common(top))
    return [
        Unmatched(query, closest_label([query], seen), common, selection.include_parents)
        for query, hit in zip(selection.labels, matched, strict=True)
        if not hit
    ]


def unmatched_in_manifest(manifest_uri: str, selection: Selection) -> list[Unmatched]:
    """`unmatched_labels` over every effective record of a manifest (one more streaming read; a
    folder or prefix of shards is read as one manifest)."""
    with one_manifest(manifest_uri) as readable:
        return unmatched_labels(selection, iter_records_mentioning(readable, ()))
