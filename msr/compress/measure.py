"""What a compression saves and costs: the stored numbers and bytes, test accuracy, CPU speed."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from msr.data.batching import EncodedSplit
from msr.eval.metrics import evaluate

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


def cpu_speeds(models: list[nn.Module], split: EncodedSplit, batch_size: int, rounds: int = 5) -> list[float]:
    """Each model's CPU speed on the split: input tokens per second of teacher-forced scoring
    (msr.eval.metrics.evaluate), the best of `rounds`. The models take turns, round by round, so
    that a busy moment of the machine slows them alike rather than whichever ran then."""
    split = split.to("cpu")
    tokens = int(split.lengths.sum())
    best = [float("inf")] * len(models)
    for _ in range(rounds):
        for i, model in enumerate(models):
            t0 = time.perf_counter()
            evaluate(model, split, batch_size)
            best[i] = min(best[i], time.perf_counter() - t0)
    return [round(tokens / seconds, 1) for seconds in best]
