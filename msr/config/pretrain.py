"""pretrain: what `msr pretrain` learns to predict: the next token, or masked tokens (BERT)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from msr.config.base import Validated, require


class Objective(str, Enum):
    causal = "causal"  # every next token, left to right
    masked = "masked"  # BERT's masked tokens, attention bidirectional; finetune makes it a prefix LM


@dataclass
class PretrainOptions(Validated):
    objective: Objective = Objective.causal
    # masked only (Devlin et al., 2019): mask_rate of each block's tokens are chosen and predicted;
    # of those, mask_token are replaced by <mask>, random_token by a random symbol, the rest kept
    mask_rate: float = 0.15
    mask_token: float = 0.8
    random_token: float = 0.1

    def check(self, p: str) -> None:
        require(0 < self.mask_rate < 1, p + "mask_rate", self.mask_rate, "must be in (0, 1)")
        for key in ("mask_token", "random_token"):
            require(0 <= getattr(self, key) <= 1, p + key, getattr(self, key), "must be in [0, 1]")
        require(self.mask_token + self.random_token <= 1, p + "random_token", self.random_token,
                f"with pretrain.mask_token={self.mask_token} must sum to at most 1 (the rest is kept as it is)")
