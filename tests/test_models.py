import pytest
from pydantic import ValidationError

from labelsift.models import DetectorInfo, ImageRecord, Instance, Label, Reason, ScanStatus

DETECTOR = DetectorInfo(name="rekognition", model_version="3.0")


def test_a_labeled_record_round_trips_through_json() -> None:
    record = ImageRecord(
        source="s3://raw/birds/0001.jpg",
        etag="9b2c",
        size=48211,
        width=1024,
        height=768,
        format="JPEG",
        orientation=1,
        status=ScanStatus.LABELED,
        detector=DETECTOR,
        labels=[
            Label(
                name="Bird",
                confidence=98.7,
                parents=["Animal"],
                categories=["Animals and Pets"],
                instances=[Instance(left=0.12, top=0.3, width=0.41, height=0.52, confidence=97.9)],
            )
        ],
    )
    assert ImageRecord.model_validate_json(record.model_dump_json()) == record


@pytest.mark.parametrize(
    ("field", "value"),
    [("width", 0), ("height", -3), ("size", -1), ("orientation", 9)],
)
def test_impossible_sizes_are_rejected_naming_the_field(field: str, value: int) -> None:
    with pytest.raises(ValidationError) as caught:
        ImageRecord(source="a.jpg", status=ScanStatus.LABELED, detector=DETECTOR, **{field: value})
    assert field in str(caught.value)


def test_confidence_above_100_is_rejected() -> None:
    with pytest.raises(ValidationError, match="confidence"):
        Label(name="Bird", confidence=101)


def test_nan_box_is_rejected() -> None:
    with pytest.raises(ValidationError, match="left"):
        Instance(left=float("nan"), top=0, width=0.1, height=0.1, confidence=50)


def test_error_status_needs_a_reason_and_labeled_needs_a_detector() -> None:
    with pytest.raises(ValidationError, match="error: a reason is required"):
        ImageRecord(source="a.jpg", status=ScanStatus.ERROR)
    with pytest.raises(ValidationError, match="detector: required"):
        ImageRecord(source="a.jpg", status=ScanStatus.LABELED)
    record = ImageRecord(
        source="a.jpg", status=ScanStatus.SKIPPED, error=Reason(code="EmptyObject", message="0 B")
    )
    assert record.error is not None and record.error.code == "EmptyObject"


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="colour"):
        ImageRecord.model_validate(
            {"source": "a.jpg", "status": "error", "error": {"code": "X", "message": ""}, "colour": 1}
        )
