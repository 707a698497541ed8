"""optimizer/: one schema per torch optimizer msr builds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from omegaconf import MISSING

from msr.config.base import Validated, fraction, non_negative, positive, require


@dataclass
class OptimizerConfig(Validated):
    name: str = MISSING
    lr: float = 1e-3
    weight_decay: float = 0.0

    def check(self, p: str) -> None:
        self.check_name(p)
        positive(p + "lr", self.lr)
        non_negative(p + "weight_decay", self.weight_decay)


@dataclass
class SGDConfig(OptimizerConfig):
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False

    def check(self, p: str) -> None:
        super().check(p)
        fraction(p + "momentum", self.momentum)
        require(not self.nesterov or self.momentum > 0, p + "nesterov", self.nesterov,
                "Nesterov momentum needs optimizer.momentum > 0")


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = 3e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8

    def check(self, p: str) -> None:
        super().check(p)
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), p + "betas",
                list(self.betas), "two numbers in [0, 1), e.g. [0.9,0.999]")
        positive(p + "eps", self.eps)


@dataclass
class AdamWConfig(AdamConfig):
    name: str = "adamw"
    weight_decay: float = 0.01


@dataclass
class AdadeltaConfig(OptimizerConfig):
    name: str = "adadelta"
    lr: float = 1.0
    rho: float = 0.9
    eps: float = 1e-6

    def check(self, p: str) -> None:
        super().check(p)
        fraction(p + "rho", self.rho)
        positive(p + "eps", self.eps)


@dataclass
class RMSpropConfig(OptimizerConfig):
    name: str = "rmsprop"
    alpha: float = 0.99
    eps: float = 1e-8
    momentum: float = 0.0

    def check(self, p: str) -> None:
        super().check(p)
        fraction(p + "alpha", self.alpha)
        positive(p + "eps", self.eps)
        fraction(p + "momentum", self.momentum)
