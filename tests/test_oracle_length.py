"""Exact match vs oracle-length exact match, on a model whose logits are written by hand."""

from __future__ import annotations

import torch
from torch import nn

from msr.data.batching import IGNORE, EncodedSplit
from msr.eval.metrics import evaluate

EOS = 3


class Scripted(nn.Module):
    """Returns the logits it was given for the rows whose number is the input's first token."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = logits

    def forward(self, inputs):
        return self.logits[inputs[:, 0], : inputs.shape[1]], None


def test_oracle_length_forgives_only_the_stopping_decision():
    # targets: [1, 2, <eos>] in three rows (labels at positions 1-3, position 0 is the prompt)
    labels = torch.tensor([[IGNORE, 1, 2, EOS]] * 3)
    logits = torch.zeros(3, 4, 4)
    for row in range(3):
        logits[row, 1, 1] = 5  # first target token right everywhere
    logits[0, 2, 2], logits[0, 3, EOS] = 5, 5  # row 0: all right
    logits[1, 2, EOS], logits[1, 2, 2] = 6, 4  # row 1: stops too early; without <eos> its next choice is right
    logits[1, 3, 0] = 9  # ...and the oracle never asks it to stop
    logits[2, 2, 0], logits[2, 2, 2] = 6, 4  # row 2: a wrong token, which no oracle length mends
    rows = torch.arange(3)[:, None].expand(3, 4)
    split = EncodedSplit(rows, labels, torch.full((3,), 4), torch.full((3,), -1), 0)
    scores = evaluate(Scripted(logits), split, batch_size=2)
    assert scores["correct"].tolist() == [True, False, False]
    assert scores["accuracy"] == 1 / 3
    assert scores["oracle_length_accuracy"] == 2 / 3
