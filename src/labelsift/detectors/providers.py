"""Which onnxruntime execution providers the local detector asks for.

CUDA when GPUs were asked for (`--gpus-per-actor` > 0) and this onnxruntime build offers
CUDAExecutionProvider (the `onnxruntime-gpu` wheel); the CPU otherwise, with a warning when GPUs
were asked for but cannot be used. The CPU provider is always last, so a node whose CUDA libraries
fail to load still labels (onnxruntime falls back along the list).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"

log = logging.getLogger(__name__)


def available_providers() -> list[str]:
    """What the installed onnxruntime build offers (imported here so callers stay light)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def choose_providers(gpus: float, available: Sequence[str] | None = None) -> tuple[str, ...]:
    """The providers for a session given the GPUs asked for and those onnxruntime offers."""
    if gpus < 0:
        raise ValueError("gpus must be 0 or more")
    offered = available_providers() if available is None else list(available)
    if gpus == 0:
        return (CPU,)
    if CUDA in offered:
        return (CUDA, CPU)
    log.warning(
        "%g GPU(s) were asked for, but this onnxruntime offers no %s (it offers %s): the local "
        "detector runs on the CPU. Install onnxruntime-gpu (and CUDA/cuDNN) on the GPU nodes to use them.",
        gpus,
        CUDA,
        ", ".join(offered) or "nothing",
    )
    return (CPU,)
