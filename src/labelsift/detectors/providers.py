"""onnxruntime execution providers by the names people type (`cpu`, `cuda`, ...), checked once."""

from __future__ import annotations

from collections.abc import Sequence

from labelsift.errors import UsageError

CPU = "CPUExecutionProvider"
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
