"""decode: how evaluate and generate turn next-token distributions into text."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from msr.config.base import Validated, non_negative, positive, positive_ints, require


class Strategy(str, Enum):
    greedy = "greedy"
    beam = "beam"
    sample = "sample"


@dataclass
class DecodeConfig(Validated):
    """How evaluate and generate turn a model's next-token distribution into text."""

    strategy: Strategy = Strategy.greedy
    max_new_tokens: int = 128  # stops earlier at <eos>
    beam_size: int = 4
    length_penalty: float = 1.0  # beams ranked by logprob / length**length_penalty
    temperature: float = 1.0  # sample only, like top_k and top_p
    top_k: int = 0  # 0: no limit
    top_p: float = 1.0  # nucleus: the fewest tokens holding this much probability
    num_return_sequences: int = 1
    self_consistency: int = 1  # > 1: sample this many answers, keep the majority (Wang et al. 2022)
    batch_size: int = 500  # sequences decoded at once

    def check(self, p: str) -> None:
        positive_ints(self, p, "max_new_tokens", "beam_size", "num_return_sequences", "self_consistency",
                      "batch_size")
        positive(p + "temperature", self.temperature)
        non_negative(p + "top_k", self.top_k)
        require(0 < self.top_p <= 1, p + "top_p", self.top_p, "must be in (0, 1]")
        if self.strategy == Strategy.beam:
            require(self.num_return_sequences <= self.beam_size, p + "num_return_sequences",
                    self.num_return_sequences, f"must be <= decode.beam_size={self.beam_size}")
        require(self.num_return_sequences == 1 or self.strategy != Strategy.greedy, p + "num_return_sequences",
                self.num_return_sequences, "needs decode.strategy=sample or decode.strategy=beam: greedy decoding "
                "has one answer per prompt, so the rows would be identical")
        require(self.self_consistency == 1 or self.strategy == Strategy.sample, p + "self_consistency",
                self.self_consistency, "needs decode.strategy=sample: a vote over identical answers decides nothing")
