"""How fast a model scores: input tokens per second of teacher-forced scoring (msr.eval.metrics.evaluate).

Models to be compared are timed in turns, round by round, so that a busy moment of the machine
slows them alike rather than whichever ran then; each keeps its best round.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

from torch import nn

from msr.data.batching import EncodedSplit
from msr.eval.metrics import evaluate


def timed_scores(models: list[nn.Module], split: EncodedSplit, batch_size: int, rounds: int = 1,
                 autocast=nullcontext) -> list[tuple[dict, float]]:
    """Each model's scores on the split and its speed in tokens per second (best of `rounds`)."""
    tokens = int(split.lengths.sum())
    best, scores = [float("inf")] * len(models), [{}] * len(models)
    for _ in range(rounds):
        for i, model in enumerate(models):
            started = time.perf_counter()
            scores[i] = evaluate(model, split, batch_size, autocast)
            best[i] = min(best[i], time.perf_counter() - started)
    return [(score, round(tokens / seconds, 1)) for score, seconds in zip(scores, best)]


def cpu_speeds(models: list[nn.Module], split: EncodedSplit, batch_size: int, rounds: int = 5) -> list[float]:
    """Each model's speed on the CPU (the models must be there), the best of `rounds`."""
    return [speed for _, speed in timed_scores(models, split.to("cpu"), batch_size, rounds)]
