"""curriculum/: which reasoning steps the training batches may hold as training goes on.

A curriculum opens the training split level by level: at level L the batches are drawn from
the examples with at most L steps, up to the split's own maximum (the last level trains on all
of it). `none` trains on everything from the first step.
"""

from __future__ import annotations

from dataclasses import dataclass

from msr.config.base import Validated, require


@dataclass
class CurriculumConfig(Validated):
    name: str = "none"
    start: int = 1  # the first level: examples with at most `start` steps

    def check(self, p: str) -> None:
        self.check_name(p)
        require(self.start >= 1, p + "start", self.start, "must be >= 1")


@dataclass
class LinearCurriculumConfig(CurriculumConfig):
    """The level grows by equal shares of training from `start` to the split's maximum, which it
    reaches after `fraction` of trainer.max_steps."""

    name: str = "linear"
    fraction: float = 0.5

    def check(self, p: str) -> None:
        super().check(p)
        require(0 < self.fraction <= 1, p + "fraction", self.fraction, "must be in (0, 1]")


@dataclass
class MasteryCurriculumConfig(CurriculumConfig):
    """The level goes up by one at an evaluation where validation accuracy on the examples with
    exactly the current level's steps reaches `threshold` (reasoning-gym's curricula)."""

    name: str = "mastery"
    threshold: float = 0.9

    def check(self, p: str) -> None:
        super().check(p)
        require(0 < self.threshold <= 1, p + "threshold", self.threshold, "must be in (0, 1]")
