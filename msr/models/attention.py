"""Attention for the recurrent models: each position's hidden state reads the earlier ones.

Scores are Luong's dot product (scaled by 1/sqrt(hidden), as in the Transformer, so that they
stay in softmax's useful range as hidden_size grows) or Bahdanau's additive v·tanh(W_q q + W_k k).
The context is combined with the query as tanh(W[h; context]) (Luong et al., 2015), which the
output layer then reads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RecurrentAttention(nn.Module):
    def __init__(self, kind: str, hidden_size: int):
        super().__init__()
        self.kind = kind
        if kind == "additive":
            self.query = nn.Linear(hidden_size, hidden_size, bias=False)
            self.key = nn.Linear(hidden_size, hidden_size)
            self.score = nn.Linear(hidden_size, 1, bias=False)
        self.combine = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, queries: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
        """queries [B, T, H] at the last T positions of history [B, S, H] (S >= T) -> [B, T, H].
        Query i sees history[:, : S - T + i + 1]: itself and the positions before it."""
        T, S = queries.shape[1], history.shape[1]
        visible = torch.ones(T, S, dtype=torch.bool, device=queries.device).tril(diagonal=S - T)
        if self.kind == "dot":
            context = F.scaled_dot_product_attention(queries[:, None], history[:, None], history[:, None],
                                                     attn_mask=visible)[:, 0]
        else:  # [B, T, S, H]: memory grows with T × S, the price of additive scores
            scores = self.score(torch.tanh(self.query(queries)[:, :, None] + self.key(history)[:, None])).squeeze(-1)
            weights = scores.masked_fill(~visible, float("-inf")).softmax(dim=-1)
            context = weights @ history
        return torch.tanh(self.combine(torch.cat([queries, context], dim=-1)))
