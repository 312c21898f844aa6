import json
from pathlib import Path

from labelsift.models import ImageRecord
from labelsift.schemas import SCHEMAS, drifted, render

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"


def test_committed_schemas_match_the_models() -> None:
    assert drifted(SCHEMA_DIR) == [], "schemas/ drifted from models.py: run `python -m labelsift.schemas`"


def test_drift_is_detected(tmp_path: Path) -> None:
    for name, model in SCHEMAS.items():
        (tmp_path / name).write_text(render(model))
    (tmp_path / "image-record.schema.json").write_text("{}\n")
    assert drifted(tmp_path) == ["image-record.schema.json"]


def test_record_schema_requires_source_and_status() -> None:
    schema = json.loads((SCHEMA_DIR / "image-record.schema.json").read_text())
    assert {"source", "status"} <= set(schema["required"])
    assert (
        ImageRecord.model_json_schema(mode="serialization")["properties"].keys()
        == schema["properties"].keys()
    )
