"""What a compression saves: the numbers and bytes a checkpoint stores (speed: msr.eval.speed)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

QUANTIZATION_PARAMETERS = (".scales", ".zero_points")  # an int8 weight's bookkeeping, not model parameters


def stored_weights(path: Path) -> dict:
    """Parameters and non-zero parameters as a checkpoint's model.safetensors stores them (a tied
    tensor once, an int8 weight as its int8 entries), and the file's size in bytes."""
    parameters = nonzero = 0
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            if key.endswith(QUANTIZATION_PARAMETERS):
                continue
            tensor = f.get_tensor(key)
            parameters += tensor.numel()
            nonzero += int(torch.count_nonzero(tensor))
    return {"parameters": parameters, "nonzero_parameters": nonzero, "size_bytes": Path(path).stat().st_size}
