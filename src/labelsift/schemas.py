"""Generate `schemas/*.json` from the pydantic models: `python -m labelsift.schemas [--check]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pydantic import BaseModel

from labelsift.exporters.receipt import ReceiptFile, ReceiptHeader
from labelsift.models import ImageRecord, RunSummary, VerdictEntry

SCHEMAS: dict[str, type[BaseModel]] = {
    "image-record.schema.json": ImageRecord,
    "verdict-entry.schema.json": VerdictEntry,
    "run-summary.schema.json": RunSummary,
    "export-receipt-header.schema.json": ReceiptHeader,  # line 1 of an export's receipt
    "export-receipt-file.schema.json": ReceiptFile,  # every following line
}


def render(model: type[BaseModel]) -> str:
    schema = model.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def drifted(folder: Path) -> list[str]:
    """Names of the schema files that are missing or differ from the models."""
    return [
        name
        for name, model in SCHEMAS.items()
        if not (folder / name).exists() or (folder / name).read_text(encoding="utf-8") != render(model)
    ]


def write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in SCHEMAS.items():
        (folder / name).write_text(render(model), encoding="utf-8")


def main(argv: list[str]) -> int:
    folder = Path(next((a for a in argv if not a.startswith("-")), "schemas"))
    if "--check" in argv:
        stale = drifted(folder)
        for name in stale:
            print(f"{folder / name} is out of date: run `python -m labelsift.schemas`", file=sys.stderr)
        return 1 if stale else 0
    write(folder)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
