"""What runs in each Ray actor: the detector loaded once, one batch in, one shard out.

Each image goes through `labelsift.scan.label_image`, the function `labelsift scan` calls, so the
records are the plain scan's. Before each image the actor asks the run's coordinator
(`control.Gate`); after a stop it labels nothing more, and what it did label is still written.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from labelsift.detectors.base import Detector, DetectorError, Limiter
from labelsift.detectors.factory import DetectorSettings, build_detector
from labelsift.detectors.providers import for_gpus
from labelsift.distributed.control import Gate, SharedRate
from labelsift.distributed.shards import shard_name, write_shard
from labelsift.errors import CannotProceed
from labelsift.models import ImageRecord, StopReason
from labelsift.scanning.labelling import is_hit, label_image
from labelsift.select import Selection
from labelsift.storage import ObjectInfo, Storage, StorageError

# What each batch returns to the driver: one row per record written (the records are in the shard).
OUTCOME_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("status", pa.string()),
        ("code", pa.string()),
        ("message", pa.string()),
        ("billed", pa.bool_()),
        ("hit", pa.bool_()),
        ("labels", pa.list_(pa.string())),
        ("shard", pa.string()),
        ("record", pa.string()),  # the record as JSON: the driver gives it to the image's copies
    ]
)
Done = tuple[ImageRecord, bool, bool | None]  # a record, whether it was billed, whether it is a hit
ITEM_FIELDS = ("uri", "key", "size", "etag", "version_id", "storage_class")


class ShardWriteFailed(CannotProceed):
    """A batch's shard could not be written; Ray retries the batch (same shard name, no duplicate)."""


@dataclass(frozen=True)
class DetectorSpec:
    """How each actor builds its detector (the detector itself is not shipped to the actors)."""

    name: str  # as --detector takes it: local, rekognition, onnx:PATH, a plugin's NAME[:ARG]
    settings: DetectorSettings
    gpus: float = 0.0

    def build(self, storage: Storage, limiter: Limiter | None) -> Detector:
        settings = replace(
            self.settings,
            limiter=limiter,
            rate_limit=None if limiter is not None else self.settings.rate_limit,
            providers=for_gpus(self.gpus, self.settings.providers),
        )
        return build_detector(self.name, storage, settings)


@dataclass(frozen=True)
class ActorJob:
    """Everything an actor needs, picklable: actor handles travel as handles."""

    dest: str
    detector: DetectorSpec
    selection: Selection | None
    threads: int
    coordinator: Any
    rate_keeper: Any | None = None
    write_attempts: int = 4  # a batch whose shard cannot be written this often stops the run


class BatchLabeller:
    """The callable class `map_batches` runs in an `ActorPoolStrategy` pool."""

    def __init__(self, job: ActorJob) -> None:
        self.job = job
        self.storage = Storage()
        limiter = SharedRate(job.rate_keeper) if job.rate_keeper is not None else None
        self.detector = job.detector.build(self.storage, limiter)
        self.gate = Gate(job.coordinator)
        self.pool = ThreadPoolExecutor(max(1, job.threads), "labelsift-actor")
        # Batches labelled but not written (the shard write failed): when Ray retries one on this
        # actor, its records are written without asking the detector (or paying) again.
        self._unwritten: dict[str, list[Done]] = {}
        self._failed_writes: Counter[str] = Counter()

    def __call__(self, batch: pa.Table) -> pa.Table:
        infos = [ObjectInfo(**{name: row[name] for name in ITEM_FIELDS}) for row in batch.to_pylist()]
        key = shard_name((info.uri, info.etag) for info in infos)
        done = self._unwritten.pop(key, None)
        if done is None:
            done = [result for result in self.pool.map(self._one, infos) if result is not None]
        try:
            shard = write_shard(self.storage, self.job.dest, [record for record, _, _ in done])
        except StorageError as exc:
            self._failed_writes[key] += 1
            if exc.fatal or self._failed_writes[key] >= self.job.write_attempts:
                self._unwritten.pop(key, None)
                self.gate.stop(StopReason.FAILED.value, f"{exc} ({len(done)} answers not recorded)")
                return _outcomes([], None)
            while len(self._unwritten) >= 4:  # bounded: the oldest is dropped (and paid again)
                self._unwritten.pop(next(iter(self._unwritten)))
            self._unwritten[key] = done
            raise ShardWriteFailed(f"{exc} The batch is retried.") from exc
        self._failed_writes.pop(key, None)
        return _outcomes(done, shard)  # a fatal error is the coordinator's to report

    def _one(self, info: ObjectInfo) -> Done | None:
        """Label one image if the coordinator allows; None if it did not or a fatal error stopped the
        run (the coordinator holds the error and the driver reports it)."""
        reserved = self.gate.ask()
        if reserved is None:
            return None
        try:
            record, billed = label_image(self.storage, self.detector, info)
        except (DetectorError, StorageError) as exc:  # fatal: no further image can succeed
            self.gate.settle(reserved, False, "error", None, None)
            self.gate.stop(StopReason.FAILED.value, str(exc))
            return None
        hit = is_hit(self.job.selection, record)
        error = f"{record.error.code}: {record.error.message}" if record.error is not None else None
        self.gate.settle(reserved, billed, record.status.value, hit, error)
        return record, billed, hit


def _outcomes(done: list[Done], shard: str | None) -> pa.Table:
    rows = [
        {
            "source": record.source,
            "status": record.status.value,
            "code": record.error.code if record.error is not None else None,
            "message": record.error.message if record.error is not None else None,
            "billed": billed,
            "hit": hit,
            "labels": [label.name for label in record.labels],
            "shard": shard,
            "record": record.model_dump_json(),
        }
        for record, billed, hit in done
    ]
    return pa.Table.from_pylist(rows, schema=OUTCOME_SCHEMA)
