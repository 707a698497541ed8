"""tto: test-time optimisation in `msr evaluate` (dynamic evaluation, test-time training)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from msr.config.base import Validated, non_negative, positive_ints, require


class TTOMethod(str, Enum):
    none = "none"
    dynamic = "dynamic"  # a language model: Krause et al. 2018; a task model: Sun et al. 2020


@dataclass
class TTOConfig(Validated):
    """How `msr evaluate` adapts a copy of the weights while it scores; the checkpoint is only read.

    A language model scores the split segment by segment, in order, and after scoring each one
    takes `steps` SGD steps on that segment's loss (dynamic evaluation), so later segments are
    read by a model that has seen the earlier ones. A task model takes `steps` SGD steps on the
    next-token loss of each example's own input (never its target), is scored on that example,
    and gets its original weights back before the next one (test-time training)."""

    method: TTOMethod = TTOMethod.none
    lr: float = 0.01  # plain SGD, no momentum: each update depends only on the segment just read
    steps: int = 1  # SGD steps per segment (language model) or per example (task)
    segment_length: int = 0  # language model: tokens per segment; 0: the run's data.block_size

    def check(self, p: str) -> None:
        require(0 < self.lr < float("inf"), p + "lr", self.lr, "must be a finite number > 0")
        positive_ints(self, p, "steps")
        non_negative(p + "segment_length", self.segment_length)


def check_adaptable(runs: list[str], checkpoint: str) -> None:
    """Test-time optimisation adapts one checkpoint's weights: refused before any work when the
    run has none to adapt, or when run= lists an ensemble."""
    from msr.runs import find_checkpoint

    require(len(runs) == 1, "run", runs, "tto.method=dynamic adapts one model's weights: give one run, "
            "not an ensemble")
    require(find_checkpoint(runs[0], (checkpoint,)) is not None, "run", runs[0],
            f"tto.method=dynamic adapts a checkpoint's weights, and this folder has no "
            f"checkpoints/{checkpoint}/model.safetensors (try checkpoint=last, or a finished run)")
