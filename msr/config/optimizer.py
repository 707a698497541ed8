"""optimizer/: one schema per torch optimizer msr builds (muon: torch's Muon with AdamW beside it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List

from omegaconf import MISSING

from msr.config.base import Validated, fraction, non_negative, positive, require


def check_momentum(p: str, momentum: float, nesterov: bool) -> None:
    fraction(p + "momentum", momentum)
    require(not nesterov or momentum > 0, p + "nesterov", nesterov, "Nesterov momentum needs optimizer.momentum > 0")


def check_adam(p: str, betas: List[float], eps: float) -> None:
    require(len(betas) == 2 and all(0 <= b < 1 for b in betas), p + "betas", list(betas),
            "two numbers in [0, 1), e.g. [0.9,0.999]")
    positive(p + "eps", eps)


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
        check_momentum(p, self.momentum, self.nesterov)


@dataclass
class AdamConfig(OptimizerConfig):
    name: str = "adam"
    lr: float = 3e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8

    def check(self, p: str) -> None:
        super().check(p)
        check_adam(p, self.betas, self.eps)


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


@dataclass
class AdagradConfig(OptimizerConfig):
    """Adagrad (Duchi et al., 2011): each parameter's step shrinks with its summed squared gradients."""
    name: str = "adagrad"
    lr: float = 1e-2  # torch's default: the accumulator shrinks steps, so it starts larger than Adam's
    lr_decay: float = 0.0  # step t uses lr / (1 + (t - 1) lr_decay)
    initial_accumulator_value: float = 0.0  # > 0 damps the first steps' size
    eps: float = 1e-10

    def check(self, p: str) -> None:
        super().check(p)
        non_negative(p + "lr_decay", self.lr_decay)
        non_negative(p + "initial_accumulator_value", self.initial_accumulator_value)
        positive(p + "eps", self.eps)


class AdjustLR(str, Enum):
    """How torch's Muon scales optimizer.lr by a matrix's shape (an orthogonal update's size
    depends on it)."""
    original = "original"  # Keller Jordan's sqrt(max(1, rows/cols)): lr ~0.02 as in modded-nanogpt
    match_rms_adamw = "match_rms_adamw"  # Moonshot's 0.2 sqrt(max(rows, cols)): an AdamW-sized update


@dataclass
class MuonConfig(OptimizerConfig):
    """Muon (Jordan et al., 2024) for the hidden layers' weight matrices, AdamW for the rest:
    embeddings, the head, norms and biases (msr/train/muon.py says why)."""
    name: str = "muon"
    lr: float = 0.02  # Muon's: modded-nanogpt's and torch's doc example, with adjust_lr_fn=original
    weight_decay: float = 0.01  # Muon's, decoupled (lr x weight_decay a step), as in Keller Jordan's Muon repo
    momentum: float = 0.95
    nesterov: bool = True
    ns_steps: int = 5  # Newton-Schulz iterations that orthogonalise each update
    adjust_lr_fn: AdjustLR = AdjustLR.original
    # the AdamW side: msr's adamw defaults; its weight decay, like adamw's, spares biases and norms
    adamw_lr: float = 3e-3
    adamw_weight_decay: float = 0.01
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8

    def check(self, p: str) -> None:
        super().check(p)
        check_momentum(p, self.momentum, self.nesterov)
        # torch refuses 100 or more when it first steps, which is after the run has started
        require(1 <= self.ns_steps < 100, p + "ns_steps", self.ns_steps, "must be an integer in [1, 99]")
        positive(p + "adamw_lr", self.adamw_lr)
        non_negative(p + "adamw_weight_decay", self.adamw_weight_decay)
        check_adam(p, self.betas, self.eps)
