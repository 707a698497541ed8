"""Which torch device and precision a run uses; asking for one this machine lacks is a user error."""

from __future__ import annotations

from functools import cache

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


# A Transformer at least this wide runs bf16 autocast on a GPU under precision=auto: its matmuls
# are big enough to be compute-bound. Narrower ones are launch-bound, where autocast's casts cost
# more than they save (H100, d_model 128: bf16 62k vs fp32 90k tokens/s).
BF16_MIN_WIDTH = 384


def check_precision(precision: str, device: torch.device, model: torch.nn.Module | None = None) -> torch.dtype:
    """The autocast dtype of trainer.precision on `device`; `auto` chooses for `model`."""
    precision = getattr(precision, "value", precision)
    if precision == "auto":
        return auto_precision(device, model)
    if precision == "fp16" and device.type != "cuda":
        raise UserError(f"trainer.precision=fp16 needs a CUDA device (this run is on {device.type}); "
                        "use trainer.precision=bf16 or fp32")
    if precision == "bf16" and device.type == "cpu" and has_lstm(model) and not cpu_runs_bf16_lstm():
        raise UserError("trainer.precision=bf16: this CPU's oneDNN has no bf16 LSTM (it needs AVX-512 or "
                        "bf16 instructions); use trainer.precision=fp32 here, or a GPU")
    return DTYPES[precision]


def has_lstm(model: torch.nn.Module | None) -> bool:
    return model is not None and any(isinstance(m, torch.nn.LSTM) for m in model.modules())


@cache
def cpu_runs_bf16_lstm() -> bool:
    """Whether nn.LSTM runs under CPU bf16 autocast here. CPU autocast casts nn.LSTM to bf16,
    and oneDNN has that kernel only on some CPUs (none on AVX2-only x86): elsewhere the first
    forward fails deep in training with "could not create a primitive descriptor". Tried on a
    tiny LSTM, as no CPU flag says it for sure."""
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(2, 2, batch_first=True)(torch.zeros(1, 1, 2))
    except RuntimeError:
        return False
    return True


def auto_precision(device: torch.device, model: torch.nn.Module | None) -> torch.dtype:
    """What trains fastest, as measured: on a GPU, bf16 autocast for a Transformer wide enough to
    be compute-bound, else fp32 with TF32 matmuls (cuDNN RNNs measured slower under bf16
    autocast; cuDNN already uses TF32 for them). On a CPU or MPS: fp32, the same numbers as
    precision=fp32."""
    if device.type != "cuda":
        return torch.float32
    from msr.models.transformer import TransformerLM

    width = model.embed.embedding_dim if isinstance(model, TransformerLM) else 0
    if width >= BF16_MIN_WIDTH and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    torch.set_float32_matmul_precision("high")  # fp32 storage, TF32 tensor cores for matmuls
    return torch.float32
