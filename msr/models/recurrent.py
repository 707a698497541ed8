"""RNN, LSTM and GRU language models on torch.nn's recurrent layers (cuDNN kernels on GPU).

`state` is the recurrent hidden state: `h` for RNN/GRU, `(h, c)` for LSTM. With model.attention,
it is (recurrent state, history [B, T_past, hidden]) and, with input feeding, also the last
attention output. Feeding tokens one at a time with the returned state gives the same logits
as one pass over the whole sequence.
"""

from __future__ import annotations

import torch
from torch import nn

from msr.models.attention import RecurrentAttention

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentLM(nn.Module):
    def __init__(self, cfg, vocab_size: int):
        super().__init__()
        kind = str(getattr(cfg.attention, "value", cfg.attention))
        self.input_feeding = cfg.input_feeding
        self.embed = nn.Embedding(vocab_size, cfg.embedding_size)
        self.rnn = CELLS[cfg.name](
            cfg.embedding_size + (cfg.hidden_size if cfg.input_feeding else 0),
            cfg.hidden_size,
            num_layers=cfg.num_layers,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,  # torch applies it between layers
            batch_first=True,
        )
        self.attention = None if kind == "none" else RecurrentAttention(kind, cfg.hidden_size)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, vocab_size)
        if cfg.tie_embeddings:
            self.head.weight = self.embed.weight

    def forward(self, tokens: torch.Tensor, state=None):
        """tokens [B, T] -> logits [B, T, V] and the state after the last token."""
        x = self.drop(self.embed(tokens))
        if self.attention is None:
            out, state = self.rnn(x, state)
            return self.head(self.drop(out)), state
        if self.input_feeding:
            out, state = self.fed_back(x, state)
        else:
            recurrent, past = (None, x.new_zeros(x.shape[0], 0, self.rnn.hidden_size)) if state is None else state
            hidden, recurrent = self.rnn(x, recurrent)  # one call over the sequence: cuDNN on GPU
            history = torch.cat([past, hidden], dim=1)
            out, state = self.attention(hidden, history), (recurrent, history)
        return self.head(self.drop(out)), state

    def fed_back(self, x: torch.Tensor, state):
        """Input feeding: step t reads [x_t; attention output of t-1], so the recurrence knows
        what it attended to; one recurrent call per time step."""
        B = x.shape[0]
        if state is None:
            state = (None, x.new_zeros(B, 0, self.rnn.hidden_size), x.new_zeros(B, 1, self.rnn.hidden_size))
        recurrent, history, fed = state
        outputs = []
        for t in range(x.shape[1]):
            hidden, recurrent = self.rnn(torch.cat([x[:, t : t + 1], fed], dim=-1), recurrent)
            history = torch.cat([history, hidden], dim=1)
            fed = self.attention(hidden, history)
            outputs.append(fed)
        return torch.cat(outputs, dim=1), (recurrent, history, fed)

    def reorder_state(self, state, index: torch.Tensor):
        """The state of sequences `index`: beams and finished rows (batch is dim 1 of h and c,
        dim 0 of the history and the fed-back output)."""
        if self.attention is None:
            return reorder_recurrent(state, index)
        recurrent, *rest = state
        return (reorder_recurrent(recurrent, index), *(s.index_select(0, index) for s in rest))


def reorder_recurrent(state, index: torch.Tensor):
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)
