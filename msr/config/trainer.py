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


class AdversarialMethod(str, Enum):
    none = "none"
    fgm = "fgm"  # one step along the loss gradient (Miyato et al., 2017)
    pgd = "pgd"  # `steps` projected gradient steps (Madry et al., 2018)


@dataclass
class AdversarialConfig(Validated):
    """Adversarial training: perturbed input embeddings (fgm, pgd) and discrete adversarial rewrites
    of training examples (refresh_every), both in msr/train/adversarial.py."""

    method: AdversarialMethod = AdversarialMethod.none
    epsilon: float = 1.0  # the L2 norm of each sequence's embedding perturbation
    steps: int = 3  # pgd's gradient steps, each of 2.5 * epsilon / steps (Madry et al.)
    weight: float = 0.5  # loss = (1 - weight) * clean + weight * adversarial
    refresh_every: int = 0  # > 0: every this many steps, rewrite refresh_size training examples against the model
    refresh_size: int = 100  # training examples searched at each refresh
    tries: int = 4  # candidate rewrites per example (as augment.adversarial), at a refresh and in robust_test
    edits: int = 2  # label-preserving operations chained in one candidate (as augment.edits)
    robust_test: bool = False  # at the end: test/robust_accuracy, the test split searched against the model

    def check(self, p: str) -> None:
        if self.method != AdversarialMethod.none:
            require(self.epsilon > 0, p + "epsilon", self.epsilon,
                    f"must be > 0 with {p}method={AdversarialMethod(self.method).value} (the size of the perturbation)")
        if self.method == AdversarialMethod.pgd:
            require(self.steps >= 1, p + "steps", self.steps, f"must be a positive integer with {p}method=pgd")
        require(0 <= self.weight <= 1, p + "weight", self.weight,
                "must be in [0, 1]: the adversarial loss's share, the clean loss has the rest")
        non_negative(p + "refresh_every", self.refresh_every)
        positive_ints(self, p, "refresh_size", "tries", "edits")

    def check_against(self, data, workers: int, p: str = "trainer.adversarial.") -> None:
        """What the rest of a training config must allow: the search rewrites a built-in task's
        examples; two forward passes before one backward are not what DDP's gradient hooks expect."""
        from msr.config.data import TaskConfig

        method = AdversarialMethod(self.method).value
        require(method == "none" or workers == 1, p + "method", method,
                "runs in one process only: leave distributed.nproc_per_node at 1 or use method=none")
        searched = self.refresh_every > 0 or self.robust_test
        if not searched:
            return
        from msr.augment.operations import label_preserving

        key = p + ("refresh_every" if self.refresh_every else "robust_test")
        value = self.refresh_every or True
        require(isinstance(data, TaskConfig) and bool(label_preserving(data.name)), key, value,
                f"searches label-preserving rewrites, which only built-in tasks have (not data={data.name})")
        require(self.refresh_size <= data.train.size or not self.refresh_every, p + "refresh_size",
                self.refresh_size, f"must be at most data.train.size={data.train.size}")


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
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)

    def check(self, p: str) -> None:
        positive_ints(self, p, "max_steps", "batch_size", "grad_accum_steps", "eval_every",
                      "eval_batch_size", "log_every", "keep_last")
        non_negative(p + "checkpoint_every", self.checkpoint_every)
        non_negative(p + "eval_iters", self.eval_iters)
        require(0 <= self.stop_at < self.max_steps, p + "stop_at", self.stop_at,
                f"must be 0 (run to the end) or a step before trainer.max_steps={self.max_steps}")
        for key in ("grad_clip", "l1", "l2"):
            non_negative(p + key, getattr(self, key))
