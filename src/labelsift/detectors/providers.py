"""onnxruntime execution providers by the names people type (`cpu`, `cuda`, ...), checked once."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from labelsift.errors import UsageError

CPU = "CPUExecutionProvider"
log = logging.getLogger(__name__)
SHORT_NAMES = {
    "cpu": CPU,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "dml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}


def full_name(name: str) -> str:
    """`cuda` -> `CUDAExecutionProvider`; a full provider name is kept as written."""
    return SHORT_NAMES.get(name.strip().lower(), name.strip())


def session_providers(requested: Sequence[str] | None, available: Sequence[str] | None = None) -> list[str]:
    """The providers to open a session with: the requested ones in order, then the CPU as a fallback.

    Nothing requested means the CPU only (the default everywhere). A requested provider this
    onnxruntime build lacks is a UsageError naming what it has and what to install, never a silent
    fall back to the CPU.
    """
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    chosen = list(dict.fromkeys(full_name(name) for name in (requested or ()) if name.strip()))
    if not chosen:
        return [CPU]
    missing = [name for name in chosen if name not in available]
    if missing:
        hint = " (pip install onnxruntime-gpu for CUDA)" if "CUDAExecutionProvider" in missing else ""
        raise UsageError(
            f"--providers {','.join(missing)}: not in this onnxruntime build, which has "
            f"{', '.join(available)}{hint}."
        )
    return chosen if CPU in chosen else [*chosen, CPU]


def for_gpus(
    gpus: float, requested: Sequence[str], available: Sequence[str] | None = None
) -> tuple[str, ...]:
    """The providers of a Ray actor given `gpus` (its `--gpus-per-actor`) and `--providers`.

    `--providers` wins when given. Otherwise an actor with GPUs asks for CUDA when this onnxruntime
    build has it (the `onnxruntime-gpu` wheel), and runs on the CPU with a warning when it does not:
    the GPUs Ray reserved then sit idle, which the warning says, but the scan goes on.
    """
    if requested or gpus <= 0:
        return tuple(requested)
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if SHORT_NAMES["cuda"] in available:
        return ("cuda",)
    log.warning(
        "%g GPU(s) per actor were asked for, but this onnxruntime offers no CUDAExecutionProvider (it "
        "offers %s): the detector runs on the CPU. Install onnxruntime-gpu (and CUDA, cuDNN) on the GPU "
        "nodes to use them.",
        gpus,
        ", ".join(available) or "nothing",
    )
    return ()
