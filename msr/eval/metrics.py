"""Loss and exact-match accuracy on a split, overall and by number of reasoning steps.

Exact match is read off one teacher-forced pass: an example counts as correct when the
argmax at every target position (and at <eos>) is the reference token. Greedy decoding
produces exactly that answer in that case and a different one otherwise, so the two
measures are equal (barring exact ties in the logits), at the cost of one forward pass.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from msr.data.batching import IGNORE, EncodedSplit
from msr.eval.scores import steps_breakdown


@torch.no_grad()
def evaluate(model, split: EncodedSplit, batch_size: int, autocast=nullcontext) -> dict:
    was_training = model.training
    model.eval()
    loss_sum, tokens, token_hits = 0.0, 0, 0
    correct = torch.zeros(len(split), dtype=torch.bool)
    logprobs = torch.zeros(len(split))  # of each whole target (and its <eos>)
    for start in range(0, len(split), batch_size):
        index = torch.arange(start, min(start + batch_size, len(split)))
        inputs, labels = split.batch(index)
        with autocast():
            logits, _ = model(inputs)
        logits = logits.float()
        mask = labels != IGNORE
        token_loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                                     reduction="none").view(labels.shape)
        loss_sum += token_loss.sum().item()
        logprobs[start : start + len(index)] = -token_loss.sum(dim=1).cpu()
        hits = (logits.argmax(-1) == labels) & mask
        tokens += int(mask.sum())
        token_hits += int(hits.sum())
        correct[start : start + len(index)] = (hits | ~mask).all(dim=1).cpu()
    model.train(was_training)
    return {
        "loss": loss_sum / max(tokens, 1),
        "accuracy": int(correct.sum()) / max(len(split), 1),
        "token_accuracy": token_hits / max(tokens, 1),
        "by_steps": accuracy_by_steps(correct, split.steps),
        "logprobs": logprobs,
        "correct": correct,  # per example, what accuracy counts (training runs write it to predictions.jsonl)
    }


def accuracy_by_steps(correct: torch.Tensor, steps: torch.Tensor) -> dict[str, float]:
    """Exact match per number of steps; `scores.steps_breakdown` adds counts and intervals."""
    return {k: row["accuracy"] for k, row in steps_breakdown(correct.tolist(), steps.tolist()).items()}
