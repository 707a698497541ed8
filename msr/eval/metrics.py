"""Loss and exact-match accuracy on a split, overall and by number of reasoning steps.

Exact match is read off one teacher-forced pass: an example counts as correct when the
argmax at every target position (and at <eos>) is the reference token. Greedy decoding
produces exactly that answer in that case and a different one otherwise, so the two
measures are equal (barring exact ties in the logits), at the cost of one forward pass.

Oracle-length exact match (Newman et al., 2020, "The EOS decision and length extrapolation")
takes the decision to stop away: the output is as long as the reference, i.e. the final token
(<eos>) is banned before the reference ends and not asked for at its end. It separates "wrote
the wrong tokens" from "stopped too early", and is reported beside exact match, never for it.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from msr import distributed
from msr.data.batching import IGNORE, EncodedSplit
from msr.eval.scores import steps_breakdown
from msr.models.positions import random_position_models


@torch.no_grad()
def evaluate(model, split: EncodedSplit, batch_size: int, autocast=nullcontext, rows: torch.Tensor | None = None) -> dict:
    """Scores of `rows` of the split (all of it by default). In a data-parallel run each worker
    scores its share and the per-example results are summed across workers, so every worker
    holds the same numbers as one process scoring them all: sums of counts, never means of means."""
    rows = torch.arange(len(split)) if rows is None else rows
    was_training = model.training
    model.eval()
    mine = distributed.shard(torch.arange(len(rows)))  # positions in `rows` this worker scores
    # per example: summed token loss, target tokens, tokens right, exactly right, right at the oracle length;
    # zero where another worker scores
    scores = torch.zeros(5, len(rows), dtype=torch.float64)
    for at in batches(split.lengths[rows[mine]], batch_size, one_length=bool(random_position_models(model))):
        at = mine[at]
        inputs, labels = split.batch(rows[at])
        with autocast():
            logits, _ = model(inputs)
        logits = logits.float()
        mask = labels != IGNORE
        token_loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                                     reduction="none").view(labels.shape)
        hits = (logits.argmax(-1) == labels) & mask
        scores[:, at] = torch.stack([token_loss.sum(1), mask.sum(1), hits.sum(1), (hits | ~mask).all(1),
                                     oracle_length_hits(logits, labels, mask)]).double().cpu()
    model.train(was_training)
    loss_sums, targets, token_hits, correct, oracle = distributed.sum_across(scores)
    correct = correct.bool()
    tokens = max(int(targets.sum()), 1)
    return {
        "loss": float(loss_sums.sum()) / tokens,
        "accuracy": int(correct.sum()) / max(len(rows), 1),
        "token_accuracy": int(token_hits.sum()) / tokens,
        "by_steps": accuracy_by_steps(correct, split.steps[rows]),
        "oracle_length_accuracy": int(oracle.sum()) / max(len(rows), 1),
        "logprobs": -loss_sums.float(),  # of each whole target (and its <eos>)
        "correct": correct,  # per example, what accuracy counts (training runs write it to predictions.jsonl)
    }


def batches(lengths: torch.Tensor, batch_size: int, one_length: bool) -> list[torch.Tensor]:
    """Indices into `lengths` in batches: in order, or with `one_length` of one length each, so a
    row with random positions gets them drawn over its own length (in a longer batch they would
    be crowded closer than any training row's). Other models keep the order: their float sums
    would move in the last bits with the batches."""
    if not one_length:
        return list(torch.arange(len(lengths)).split(batch_size))
    order = lengths.argsort(stable=True)
    groups = order.split(torch.unique_consecutive(lengths[order], return_counts=True)[1].tolist())
    return [chunk for group in groups for chunk in group.split(batch_size)]


def oracle_length_hits(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row: every target token but the last is the argmax once the last one (<eos>) is banned."""
    last = mask & (mask.cumsum(1) == mask.sum(1, keepdim=True))  # each row's final target position
    final = torch.where(last, labels, 0).sum(1)  # its token (a row without targets: 0, unused)
    banned = logits.scatter(-1, final[:, None, None].expand(-1, logits.shape[1], 1), float("-inf"))
    before = mask & ~last
    return ((banned.argmax(-1) == labels) | ~before).all(1)


def accuracy_by_steps(correct: torch.Tensor, steps: torch.Tensor) -> dict[str, float]:
    """Exact match per number of steps; `scores.steps_breakdown` adds counts and intervals."""
    return {k: row["accuracy"] for k, row in steps_breakdown(correct.tolist(), steps.tolist()).items()}
