"""RNN, LSTM and GRU language models on torch.nn's recurrent layers (cuDNN kernels on GPU).

`state` is the recurrent hidden state: `h` for RNN/GRU, `(h, c)` for LSTM. Feeding tokens one
at a time with the returned state gives the same logits as one pass over the whole sequence.
"""

from __future__ import annotations

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentLM(nn.Module):
    def __init__(self, cfg, vocab_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.embedding_size)
        self.rnn = CELLS[cfg.name](
            cfg.embedding_size,
            cfg.hidden_size,
            num_layers=cfg.num_layers,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,  # torch applies it between layers
            batch_first=True,
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, vocab_size)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor, state=None):
        """tokens [B, T] -> logits [B, T, V] and the state after the last token."""
        x = self.drop(self.embed(tokens))
        out, state = self.rnn(x, state)
        return self.head(self.drop(out)), state

    @staticmethod
    def reorder_state(state, index: torch.Tensor):
        """The state of sequences `index` (batch is dim 1 of h and c): beams and finished rows."""
        if isinstance(state, tuple):
            return tuple(s.index_select(1, index) for s in state)
        return state.index_select(1, index)
