"""finetune: what a fine-tuning run freezes, its per-part learning rates and its LoRA adapters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List

from msr.config.base import Validated, fraction, non_negative, positive, require


FREEZE = re.compile(r"none|embeddings|all_but_head|lower:[1-9][0-9]*")


@dataclass
class LearningRateScale(Validated):
    """Discriminative learning rates: optimizer.lr times these, per part of the model."""

    embeddings: float = 1.0  # token embeddings and positions
    body: float = 1.0  # Transformer blocks or recurrent layers (the top one; see layer_decay)
    head: float = 1.0  # the output projection
    layer_decay: float = 1.0  # each body layer below the top gets this times the one above (ULMFiT)

    def check(self, p: str) -> None:
        for key in ("embeddings", "body", "head"):
            positive(p + key, getattr(self, key))
        require(0 < self.layer_decay <= 1, p + "layer_decay", self.layer_decay, "must be in (0, 1]")


@dataclass
class LoraConfig(Validated):
    """LoRA adapters (Hu et al., 2021) through peft; rank 0 trains the model's own weights."""

    rank: int = 0
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0
    target_modules: List[str] = field(default_factory=lambda: ["qkv", "proj", "mlp.0", "mlp.2"])

    def check(self, p: str) -> None:
        non_negative(p + "rank", self.rank)
        positive(p + "alpha", self.alpha)
        fraction(p + "dropout", self.dropout)
        require(len(self.target_modules) > 0, p + "target_modules", self.target_modules,
                "name at least one Linear layer, e.g. [qkv,proj]")


@dataclass
class TransferConfig(Validated):
    freeze: str = "none"  # none | embeddings | lower:N (embeddings and the N lowest layers) | all_but_head
    lr_scale: LearningRateScale = field(default_factory=LearningRateScale)
    lora: LoraConfig = field(default_factory=LoraConfig)

    def check(self, p: str) -> None:
        require(FREEZE.fullmatch(self.freeze) is not None, p + "freeze", self.freeze,
                "one of none, embeddings, lower:N, all_but_head")
        require(self.lora.rank == 0 or self.freeze == "none", p + "freeze", self.freeze,
                "must be none with LoRA (finetune.lora.rank > 0): the base weights are frozen already")
