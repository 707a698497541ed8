"""Which torch device and precision a run uses; asking for one this machine lacks is a user error."""

from __future__ import annotations

import torch

from msr.errors import UserError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(kind: str) -> torch.device:
    kind = getattr(kind, "value", kind)
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no GPU is visible"
        raise UserError(f"device=cuda: CUDA is not available here (torch {torch.__version__}, {build}); "
                        "use device=cpu or device=auto")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserError("device=mps: Apple's MPS backend is not available here; use device=cpu or device=auto")
    return torch.device(kind)


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    precision = getattr(precision, "value", precision)
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"trainer.precision=fp16 needs a CUDA device (this run is on {device.type}); "
                        "use trainer.precision=bf16 or fp32")
    return DTYPES[precision]
