"""trainer: the training loop's budget, batching, penalties, precision, checkpoints and early stopping."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from msr.config.base import Validated, non_negative, positive_ints, require


class Precision(str, Enum):
    auto = "auto"  # what measured fastest for the model on the device: msr.device.auto_precision
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


@dataclass
class EarlyStoppingConfig(Validated):
    monitor: str = "val/accuracy"
    patience: int = 0  # evaluations without improvement before stopping; 0 turns it off
    min_delta: float = 0.0

    def check(self, p: str) -> None:
        require(self.monitor in ("val/accuracy", "val/loss"), p + "monitor", self.monitor,
                "one of val/accuracy, val/loss")
        non_negative(p + "patience", self.patience)
        non_negative(p + "min_delta", self.min_delta)


@dataclass
class TrainerConfig(Validated):
    max_steps: int = 3000
    batch_size: int = 64
    grad_accum_steps: int = 1
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    l1: float = 0.0  # explicit penalties added to the loss, on top of optimizer weight decay
    l2: float = 0.0
    eval_every: int = 250
    eval_batch_size: int = 500
    # evaluations during training estimate on this many random batches of eval_batch_size (nanoGPT's
    # eval_iters), and the best checkpoint is scored on the whole validation split once at the end;
    # 0: every evaluation scores the whole split
    eval_iters: int = 0
    log_every: int = 50
    precision: Precision = Precision.auto
    compile: bool = False
    checkpoint_every: int = 0  # steps between checkpoints/last; 0: at every evaluation
    keep_last: int = 1  # step checkpoints kept (the newest is checkpoints/last), besides best
    skip_nonfinite: bool = False  # skip (and count) steps whose loss is NaN or inf instead of failing
    stop_at: int = 0  # pause after this step with checkpoints/last, as an interruption would; 0: run on
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)

    def check(self, p: str) -> None:
        positive_ints(self, p, "max_steps", "batch_size", "grad_accum_steps", "eval_every",
                      "eval_batch_size", "log_every", "keep_last")
        non_negative(p + "checkpoint_every", self.checkpoint_every)
        non_negative(p + "eval_iters", self.eval_iters)
        require(0 <= self.stop_at < self.max_steps, p + "stop_at", self.stop_at,
                f"must be 0 (run to the end) or a step before trainer.max_steps={self.max_steps}")
        for key in ("grad_clip", "l1", "l2"):
            non_negative(p + key, getattr(self, key))
