"""scheduler/: linear warmup, then a constant, decaying or stepped learning rate."""

from __future__ import annotations

from dataclasses import dataclass

from msr.config.base import Validated, non_negative, positive, require


@dataclass
class SchedulerConfig(Validated):
    """Linear warmup from lr/warmup_steps to lr, then the named schedule over the rest."""

    name: str = "constant"
    warmup_steps: int = 0

    def check(self, p: str) -> None:
        self.check_name(p)
        non_negative(p + "warmup_steps", self.warmup_steps)


@dataclass
class DecayConfig(SchedulerConfig):
    """A schedule that decays to min_lr_ratio * optimizer.lr by the last step, after a warmup."""

    warmup_steps: int = 100
    min_lr_ratio: float = 0.0

    def check(self, p: str) -> None:
        super().check(p)
        require(0 <= self.min_lr_ratio <= 1, p + "min_lr_ratio", self.min_lr_ratio, "must be in [0, 1]")


@dataclass
class CosineConfig(DecayConfig):
    name: str = "cosine"
    min_lr_ratio: float = 0.1


@dataclass
class LinearConfig(DecayConfig):
    name: str = "linear"


def decay_factor(key: str, value: float) -> None:
    require(0 < value <= 1, key, value, "must be in (0, 1]")


@dataclass
class StepConfig(SchedulerConfig):
    name: str = "step"
    step_size: int = 500  # multiply the lr by gamma every step_size steps
    gamma: float = 0.5

    def check(self, p: str) -> None:
        super().check(p)
        positive(p + "step_size", self.step_size)
        decay_factor(p + "gamma", self.gamma)


@dataclass
class ExponentialConfig(SchedulerConfig):
    name: str = "exponential"
    gamma: float = 0.999  # per step

    def check(self, p: str) -> None:
        super().check(p)
        decay_factor(p + "gamma", self.gamma)
