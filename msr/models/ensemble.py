"""Several trained models as one: the mean of their next-token probabilities.

`Ensemble(models)(tokens, state)` returns log-probabilities (a valid set of logits) and a tuple
of the members' states, so scoring and every decoding strategy work on it unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        limits = [m.max_len for m in members if hasattr(m, "max_len")]
        if limits:
            self.max_len = min(limits)

    def forward(self, tokens: torch.Tensor, state=None):
        states = state or (None,) * len(self.members)
        outputs = [member(tokens, s) for member, s in zip(self.members, states)]
        logprobs = torch.stack([F.log_softmax(logits.float(), dim=-1) for logits, _ in outputs])
        return torch.logsumexp(logprobs, dim=0) - math.log(len(self.members)), tuple(s for _, s in outputs)

    def reorder_state(self, state, index: torch.Tensor):
        return tuple(member.reorder_state(s, index) for member, s in zip(self.members, state))
