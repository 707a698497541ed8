"""model/: the recurrent networks (rnn, lstm, gru) and the Transformer."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from omegaconf import MISSING

from msr.config.base import Validated, fraction, positive_ints, require


class Positions(str, Enum):
    learned = "learned"
    sinusoidal = "sinusoidal"


@dataclass
class RecurrentConfig(Validated):
    name: str = MISSING  # rnn | lstm | gru: each option of model/ names itself
    embedding_size: int = 64
    hidden_size: int = 128
    num_layers: int = 1
    dropout: float = 0.0
    tie_embeddings: bool = False

    def check(self, p: str) -> None:
        require(self.name in ("rnn", "lstm", "gru"), p + "name", self.name, "one of rnn, lstm, gru")
        positive_ints(self, p, "embedding_size", "hidden_size", "num_layers")
        fraction(p + "dropout", self.dropout)
        require(
            not self.tie_embeddings or self.embedding_size == self.hidden_size,
            p + "tie_embeddings", self.tie_embeddings,
            f"tied embeddings need model.embedding_size == model.hidden_size "
            f"(now {self.embedding_size} and {self.hidden_size})",
        )


@dataclass
class TransformerConfig(Validated):
    name: str = "transformer"
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 4
    d_ff: int = 512
    dropout: float = 0.0
    positions: Positions = Positions.learned
    max_len: int = 256
    tie_embeddings: bool = True
    share_layers: bool = False  # one block applied n_layers times (Universal Transformer)

    def check(self, p: str) -> None:
        self.check_name(p)
        positive_ints(self, p, "d_model", "n_layers", "n_heads", "d_ff", "max_len")
        require(self.d_model % self.n_heads == 0, p + "n_heads", self.n_heads,
                f"must divide model.d_model={self.d_model}")
        fraction(p + "dropout", self.dropout)
