"""The training step: gradient accumulation and penalties against hand-made equivalents."""

from __future__ import annotations

import copy

import torch

from msr.config import RecurrentConfig, SchedulerConfig, SGDConfig, TrainerConfig
from msr.data.batching import IGNORE
from msr.models import build_model
from msr.train.loop import Trainer
from msr.train.optim import build_optimizer, build_scheduler


def make_trainer(model, **trainer_options):
    optimizer = build_optimizer(SGDConfig(lr=0.5, momentum=0.0), model)
    scheduler = build_scheduler(SchedulerConfig(), optimizer, total_steps=10)
    return Trainer(model, optimizer, scheduler, TrainerConfig(grad_clip=0.0, **trainer_options), torch.device("cpu"))


def batch(rows: int, targets_per_row: list[int]):
    torch.manual_seed(rows)
    inputs = torch.randint(0, 11, (rows, 6))
    labels = torch.full((rows, 6), IGNORE)
    for r, n in enumerate(targets_per_row):
        labels[r, 6 - n :] = torch.randint(0, 11, (n,))
    return inputs, labels


def test_accumulated_micro_batches_equal_one_large_batch():
    torch.manual_seed(0)
    model = build_model(RecurrentConfig(name="gru", embedding_size=8, hidden_size=8), vocab_size=11)
    twin = copy.deepcopy(model)
    # micro-batches with different numbers of target tokens: a per-token mean must weight them
    a, b = batch(3, [1, 1, 1]), batch(2, [4, 3])
    whole = (torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]]))
    loss_accumulated = make_trainer(model).step([a, b])
    loss_whole = make_trainer(twin).step([whole])
    torch.testing.assert_close(loss_accumulated, loss_whole)
    for p, q in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(p, q)


def test_l2_penalty_adds_its_gradient_to_matrices_only():
    torch.manual_seed(0)
    model = build_model(RecurrentConfig(name="rnn", embedding_size=4, hidden_size=4), vocab_size=11)
    plain, start = copy.deepcopy(model), copy.deepcopy(model)
    data = [batch(2, [2, 2])]
    make_trainer(model, l2=0.1).step(data)
    make_trainer(plain).step(data)
    for p, q, w in zip(model.parameters(), plain.parameters(), start.parameters()):
        # SGD with lr 0.5: the penalty 0.1 * sum(w^2) adds 0.5 * 0.2 * w to a matrix's update
        expected = q - 0.5 * 0.2 * w if p.dim() >= 2 else q
        torch.testing.assert_close(p, expected)
